//! Legacy PC devices: the 8250 UART (console) and the i8042 controller
//! (whose reset line ends the VM).

pub mod i8042;
pub mod persist;
pub mod serial;

pub use i8042::I8042;
pub use serial::SerialConsole;

use std::io;
use vmm_sys_util::eventfd::EventFd;

/// A vm-superio interrupt or reset line backed by an eventfd.
pub struct EventFdTrigger(pub EventFd);

impl vm_superio::Trigger for EventFdTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}
