//! The console: a 16550A-compatible UART at COM1 (0x3f8, IRQ 4) from
//! vm-superio, its interrupt an irqfd, its output a host writer.

use std::io::Write;

use vm_superio::Serial;

use super::EventFdTrigger;
use crate::devices::BusDevice;

/// COM1 port base.
pub const COM1_BASE: u64 = 0x3f8;
/// Ports the UART decodes.
pub const COM1_LEN: u64 = 8;

/// The console UART.
pub struct SerialConsole {
    pub(super) uart: Serial<EventFdTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl SerialConsole {
    /// A UART that raises `irq` and writes what the guest sends to `out`.
    pub fn new(irq: EventFdTrigger, out: Box<dyn Write + Send>) -> Self {
        Self {
            uart: Serial::new(irq, out),
        }
    }

    /// Queues host input for the guest to read; returns how much fitted.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity();
        let n = room.min(bytes.len());
        if n == 0 {
            return 0;
        }
        self.uart.enqueue_raw_bytes(&bytes[..n]).unwrap_or(0)
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && offset < COM1_LEN {
            data[0] = self.uart.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && offset < COM1_LEN {
            // A host write error (closed stdout) must not stop the guest.
            let _ = self.uart.write(offset as u8, data[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vmm_sys_util::eventfd::EventFd;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_reach_the_writer_and_odd_sizes_are_ignored() {
        let sink = Sink::default();
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut s = SerialConsole::new(EventFdTrigger(evt), Box::new(sink.clone()));
        s.write(0, b"h");
        s.write(0, b"i");
        s.write(0, &[1, 2]); // 2-byte access: ignored
        s.write(100, b"x"); // out of range: ignored
        assert_eq!(&*sink.0.lock().unwrap(), b"hi");
        let mut d = [0u8; 4];
        s.read(5, &mut d);
        assert_eq!(d, [0xff; 4]);
        let mut lsr = [0u8; 1];
        s.read(5, &mut lsr);
        assert_ne!(lsr[0] & 0x20, 0, "transmitter empty");
        assert_eq!(s.enqueue_input(b"ab"), 2);
    }
}
