//! A process's attributes beyond its confinement, from its OCI `process`
//! as runc reads them: `user.umask`, `oomScoreAdj`, `ioPriority`
//! (ioprio_set) and `scheduler` (sched_setattr). Checked here, applied by
//! the child just before exec (`process::child`); errors name the field.

use oci_spec::runtime::{IOPriorityClass, LinuxSchedulerFlag, LinuxSchedulerPolicy, Process};
use thiserror::Error;

use crate::process::{ProcessAttrs, SchedAttr};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AttrError {
    #[error("process.user.umask {0:#o} is not a file mode mask")]
    Umask(u32),
    #[error("process.oomScoreAdj {0} is not within -1000..=1000")]
    OomScoreAdj(i32),
    #[error("process.ioPriority: priority {0} is not within 0..=7")]
    IoPriority(i64),
    #[error("process.scheduler: policy {0} is not supported by Linux")]
    Policy(&'static str),
    #[error("process.scheduler: nice {0} is not within -20..=19")]
    Nice(i32),
    #[error("process.scheduler: priority {0} is not valid for {1}")]
    Priority(i32, &'static str),
    #[error("process.scheduler: {0} needs runtime, deadline and period")]
    Deadline(&'static str),
}

/// `process`'s attributes, checked.
pub fn from_oci(process: &Process) -> Result<ProcessAttrs, AttrError> {
    let mut attrs = ProcessAttrs::default();
    if let Some(umask) = process.user().umask() {
        if umask > 0o777 {
            return Err(AttrError::Umask(umask));
        }
        attrs.umask = umask;
    }
    if let Some(adj) = process.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(AttrError::OomScoreAdj(adj));
        }
        attrs.oom_score_adj = Some(adj);
    }
    if let Some(io) = process.io_priority() {
        if !(0..=7).contains(&io.priority()) {
            return Err(AttrError::IoPriority(io.priority()));
        }
        let class: u16 = match io.class() {
            IOPriorityClass::IoprioClassRt => 1,
            IOPriorityClass::IoprioClassBe => 2,
            IOPriorityClass::IoprioClassIdle => 3,
        };
        attrs.io_priority = Some(class << 13 | io.priority() as u16);
    }
    if let Some(scheduler) = process.scheduler() {
        attrs.scheduler = Some(sched_attr(scheduler)?);
    }
    Ok(attrs)
}

fn sched_attr(s: &oci_spec::runtime::Scheduler) -> Result<SchedAttr, AttrError> {
    use LinuxSchedulerPolicy as P;
    let (policy, name) = match s.policy() {
        P::SchedOther => (libc::SCHED_OTHER, "SCHED_OTHER"),
        P::SchedFifo => (libc::SCHED_FIFO, "SCHED_FIFO"),
        P::SchedRr => (libc::SCHED_RR, "SCHED_RR"),
        P::SchedBatch => (libc::SCHED_BATCH, "SCHED_BATCH"),
        P::SchedIdle => (libc::SCHED_IDLE, "SCHED_IDLE"),
        P::SchedDeadline => (6, "SCHED_DEADLINE"),
        P::SchedIso => return Err(AttrError::Policy("SCHED_ISO")),
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(AttrError::Nice(nice));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(s.policy(), P::SchedFifo | P::SchedRr);
    if (realtime && !(1..=99).contains(&priority)) || (!realtime && priority != 0) {
        return Err(AttrError::Priority(priority, name));
    }
    let mut flags = 0u64;
    for flag in s.flags().iter().flatten() {
        use LinuxSchedulerFlag as F;
        flags |= match flag {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if matches!(s.policy(), P::SchedDeadline) && (runtime == 0 || deadline == 0) {
        return Err(AttrError::Deadline(name));
    }
    Ok(SchedAttr {
        policy: policy as u32,
        flags,
        nice,
        priority: priority as u32,
        runtime,
        deadline,
        period,
        ..SchedAttr::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(extra: &str) -> Process {
        serde_json::from_str(&format!(
            r#"{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0{extra}}}}}"#
        ))
        .unwrap()
    }

    fn with(fields: &str) -> Process {
        serde_json::from_str(&format!(
            r#"{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}},{fields}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn defaults_are_runcs() {
        let attrs = from_oci(&process("")).unwrap();
        assert_eq!(attrs, ProcessAttrs::default());
        assert_eq!(attrs.umask, 0o022);
    }

    #[test]
    fn each_field_is_read() {
        assert_eq!(from_oci(&process(r#","umask":63"#)).unwrap().umask, 0o077);
        assert_eq!(
            from_oci(&with(r#""oomScoreAdj":-500"#))
                .unwrap()
                .oom_score_adj,
            Some(-500)
        );
        assert_eq!(
            from_oci(&with(
                r#""ioPriority":{"class":"IOPRIO_CLASS_IDLE","priority":5}"#
            ))
            .unwrap()
            .io_priority,
            Some(3 << 13 | 5)
        );
        let attr = from_oci(&with(
            r#""scheduler":{"policy":"SCHED_FIFO","priority":10,"flags":["SCHED_RESET_ON_FORK"]}"#,
        ))
        .unwrap()
        .scheduler
        .unwrap();
        assert_eq!(
            (attr.policy, attr.priority, attr.flags, attr.size),
            (libc::SCHED_FIFO as u32, 10, 1, 56)
        );
        let attr = from_oci(&with(r#""scheduler":{"policy":"SCHED_BATCH","nice":7}"#))
            .unwrap()
            .scheduler
            .unwrap();
        assert_eq!((attr.policy, attr.nice), (libc::SCHED_BATCH as u32, 7));
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (process(r#","umask":4095"#), "process.user.umask"),
            (with(r#""oomScoreAdj":1001"#), "process.oomScoreAdj"),
            (
                with(r#""ioPriority":{"class":"IOPRIO_CLASS_BE","priority":8}"#),
                "process.ioPriority",
            ),
            (
                with(r#""scheduler":{"policy":"SCHED_ISO"}"#),
                "process.scheduler",
            ),
            (
                with(r#""scheduler":{"policy":"SCHED_RR","priority":0}"#),
                "process.scheduler",
            ),
            (
                with(r#""scheduler":{"policy":"SCHED_OTHER","nice":40}"#),
                "process.scheduler",
            ),
            (
                with(r#""scheduler":{"policy":"SCHED_DEADLINE"}"#),
                "process.scheduler",
            ),
        ];
        for (process, field) in cases {
            let err = from_oci(&process).unwrap_err().to_string();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
