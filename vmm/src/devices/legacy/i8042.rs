//! The i8042 keyboard controller, as far as a Linux guest uses it: its
//! reset command (0xfe on port 0x64) is how the guest reboots, which for a
//! microVM means the VM is done; and the probe commands (read/write the
//! control byte, self tests, keyboard reset) are answered at once, because
//! a controller that stays silent costs the guest's driver a 0.5 s timeout
//! at every boot (Firecracker's model answers them for the same reason).

use std::collections::VecDeque;

use vm_superio::Trigger;

use super::EventFdTrigger;
use crate::devices::BusDevice;

/// Port base (data 0x60, command/status 0x64).
pub const I8042_BASE: u64 = 0x60;
/// Ports decoded (0x60..=0x64).
pub const I8042_LEN: u64 = 5;

const OFS_DATA: u64 = 0;
const OFS_STATUS: u64 = 4;

/// Status: output buffer full (data waits on port 0x60).
const SB_OUT_FULL: u8 = 0x01;
/// Status: system flag (self test passed).
pub(super) const SB_SYSTEM: u8 = 0x04;
/// Status: the last write was a command.
pub(super) const SB_COMMAND: u8 = 0x08;
/// Status: keyboard not inhibited (no keylock).
pub(super) const SB_KBD_ENABLED: u8 = 0x10;

/// Control byte: keyboard interrupt enabled, system flag, translation on.
const CTR_DEFAULT: u8 = 0x01 | 0x04 | 0x40;

const CMD_READ_CTR: u8 = 0x20;
pub(super) const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
pub(super) const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
pub(super) const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_RESET_CPU: u8 = 0xfe;

/// Keyboard replies.
const KBD_ACK: u8 = 0xfa;
const KBD_SELF_TEST_OK: u8 = 0xaa;

/// A guest cannot queue more than this many reply bytes.
pub(super) const MAX_QUEUED: usize = 16;

/// The controller; `reset` fires when the guest asks for a CPU reset.
pub struct I8042 {
    pub(super) reset: EventFdTrigger,
    pub(super) status: u8,
    pub(super) control: u8,
    pub(super) replies: VecDeque<u8>,
    /// A command that takes its argument on the data port.
    pub(super) awaiting: Option<u8>,
}

impl I8042 {
    /// A controller that signals `reset`.
    pub fn new(reset: EventFdTrigger) -> Self {
        Self {
            reset,
            status: SB_SYSTEM | SB_KBD_ENABLED,
            control: CTR_DEFAULT,
            replies: VecDeque::new(),
            awaiting: None,
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        for byte in bytes {
            if self.replies.len() < MAX_QUEUED {
                self.replies.push_back(*byte);
            }
        }
    }

    fn command(&mut self, cmd: u8) {
        self.status |= SB_COMMAND;
        match cmd {
            CMD_READ_CTR => self.reply(&[self.control]),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT | CMD_WRITE_AUX => self.awaiting = Some(cmd),
            CMD_SELF_TEST => self.reply(&[0x55]),
            CMD_TEST_KBD => self.reply(&[0x00]),
            // No aux (mouse) port: its test reports a clock line stuck low.
            CMD_TEST_AUX => self.reply(&[0x01]),
            CMD_DISABLE_KBD => self.control |= 0x10,
            CMD_ENABLE_KBD => self.control &= !0x10,
            CMD_DISABLE_AUX => self.control |= 0x20,
            CMD_ENABLE_AUX => self.control &= !0x20,
            CMD_RESET_CPU => {
                // The VM ends either way; a failed signal is logged by the trigger's owner.
                let _ = self.reset.trigger();
            }
            _ => {}
        }
    }

    fn data(&mut self, byte: u8) {
        self.status &= !SB_COMMAND;
        match self.awaiting.take() {
            Some(CMD_WRITE_CTR) => self.control = byte,
            // Output port and aux bytes go nowhere.
            Some(_) => {}
            // A byte for the keyboard itself.
            None => match byte {
                0xff => self.reply(&[KBD_ACK, KBD_SELF_TEST_OK]),
                0xf2 => self.reply(&[KBD_ACK, 0xab, 0x83]),
                0xee => self.reply(&[0xee]),
                _ => self.reply(&[KBD_ACK]),
            },
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() != 1 {
            data.fill(0xff);
            return;
        }
        data[0] = match offset {
            OFS_DATA => self.replies.pop_front().unwrap_or(0),
            OFS_STATUS => {
                self.status
                    | if self.replies.is_empty() {
                        0
                    } else {
                        SB_OUT_FULL
                    }
            }
            _ => 0xff,
        };
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 1 {
            return;
        }
        match offset {
            OFS_DATA => self.data(data[0]),
            OFS_STATUS => self.command(data[0]),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    fn controller() -> (I8042, EventFd) {
        let evt = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        (I8042::new(EventFdTrigger(evt.try_clone().unwrap())), evt)
    }

    fn read(k: &mut I8042, offset: u64) -> u8 {
        let mut b = [0u8];
        k.read(offset, &mut b);
        b[0]
    }

    #[test]
    fn reset_command_fires_the_reset_line() {
        let (mut k, evt) = controller();
        k.write(OFS_STATUS, &[CMD_READ_CTR]);
        assert!(evt.read().is_err(), "no reset yet");
        k.write(OFS_STATUS, &[CMD_RESET_CPU]);
        assert_eq!(evt.read().unwrap(), 1);
    }

    #[test]
    fn the_control_byte_reads_back_what_was_written() {
        let (mut k, _evt) = controller();
        assert_eq!(read(&mut k, OFS_STATUS) & SB_OUT_FULL, 0);
        assert_ne!(read(&mut k, OFS_STATUS) & SB_KBD_ENABLED, 0, "no keylock");
        k.write(OFS_STATUS, &[CMD_READ_CTR]);
        assert_ne!(
            read(&mut k, OFS_STATUS) & SB_OUT_FULL,
            0,
            "Linux polls OBF before reading"
        );
        assert_eq!(read(&mut k, OFS_DATA), CTR_DEFAULT);
        assert_eq!(read(&mut k, OFS_STATUS) & SB_OUT_FULL, 0);
        k.write(OFS_STATUS, &[CMD_WRITE_CTR]);
        k.write(OFS_DATA, &[0x47]);
        k.write(OFS_STATUS, &[CMD_READ_CTR]);
        assert_eq!(read(&mut k, OFS_DATA), 0x47);
    }

    #[test]
    fn self_tests_and_keyboard_reset_answer() {
        let (mut k, _evt) = controller();
        k.write(OFS_STATUS, &[CMD_SELF_TEST]);
        assert_eq!(read(&mut k, OFS_DATA), 0x55);
        k.write(OFS_STATUS, &[CMD_TEST_KBD]);
        assert_eq!(read(&mut k, OFS_DATA), 0x00);
        k.write(OFS_DATA, &[0xff]);
        assert_eq!(
            (read(&mut k, OFS_DATA), read(&mut k, OFS_DATA)),
            (KBD_ACK, KBD_SELF_TEST_OK)
        );
    }

    #[test]
    fn a_guest_cannot_grow_the_reply_queue() {
        let (mut k, _evt) = controller();
        for _ in 0..10_000 {
            k.write(OFS_STATUS, &[CMD_READ_CTR]);
        }
        assert_eq!(k.replies.len(), MAX_QUEUED);
        let mut wide = [0u8; 4];
        k.read(OFS_DATA, &mut wide);
        assert_eq!(wide, [0xff; 4]);
    }
}
