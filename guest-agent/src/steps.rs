//! How long the steps of one `RunContainer` took in the guest, for the
//! host's phase log (`HULL_TIMINGS`): the steps are marked on the thread
//! that serves the request and go back with its `Started` reply.

use std::cell::RefCell;
use std::time::Instant;

use hull_protocol::GuestStep;

/// More would be a bug: the reply stays small.
const MAX_STEPS: usize = 16;

thread_local! {
    static STEPS: RefCell<Option<(Instant, Vec<GuestStep>)>> = const { RefCell::new(None) };
}

/// Starts timing a request on this thread.
pub fn begin() {
    STEPS.with(|s| *s.borrow_mut() = Some((Instant::now(), Vec::new())));
}

/// Marks the end of step `name` (nothing unless [`begin`] ran here).
pub fn mark(name: &str) {
    STEPS.with(|s| {
        if let Some((start, steps)) = s.borrow_mut().as_mut() {
            if steps.len() < MAX_STEPS {
                steps.push(GuestStep {
                    name: name.to_string(),
                    micros: start.elapsed().as_micros() as u64,
                });
            }
        }
    });
}

/// The steps marked since [`begin`]; timing stops.
pub fn take() -> Vec<GuestStep> {
    STEPS.with(|s| {
        s.borrow_mut()
            .take()
            .map(|(_, steps)| steps)
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_kept_per_request_in_order_and_bounded() {
        mark("before");
        assert!(take().is_empty(), "nothing is kept before begin");
        begin();
        mark("a");
        mark("b");
        let steps = take();
        assert_eq!(
            steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(steps[0].micros <= steps[1].micros);
        begin();
        (0..40).for_each(|_| mark("x"));
        assert_eq!(take().len(), MAX_STEPS);
        assert!(take().is_empty());
    }
}
