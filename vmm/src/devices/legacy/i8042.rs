//! The i8042 keyboard controller, only as far as a guest needs it: its
//! reset command (0xfe on port 0x64) is how a guest reboots, and for a
//! microVM a reboot means the VM is done.

use vm_superio::I8042Device;

use super::EventFdTrigger;
use crate::devices::BusDevice;

/// Port base (data 0x60, command/status 0x64).
pub const I8042_BASE: u64 = 0x60;
/// Ports decoded (0x60..=0x64).
pub const I8042_LEN: u64 = 5;

/// The controller; `reset` fires when the guest asks for a CPU reset.
pub struct I8042 {
    dev: I8042Device<EventFdTrigger>,
}

impl I8042 {
    /// A controller that signals `reset`.
    pub fn new(reset: EventFdTrigger) -> Self {
        Self {
            dev: I8042Device::new(reset),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() == 1 && (offset == 0 || offset == 4) {
            data[0] = self.dev.read(offset as u8);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() == 1 && (offset == 0 || offset == 4) {
            let _ = self.dev.write(offset as u8, data[0]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    #[test]
    fn reset_command_fires_the_reset_line() {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut k = I8042::new(EventFdTrigger(evt.try_clone().unwrap()));
        k.write(4, &[0x20]); // read command byte: harmless
        assert!(evt.read().is_err(), "no reset yet");
        k.write(4, &[0xfe]);
        assert_eq!(evt.read().unwrap(), 1);
    }
}
