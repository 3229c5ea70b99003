//! Saving and restoring the legacy devices: the console UART's registers
//! and receive FIFO (vm-superio's `SerialState`) and the i8042's status,
//! control byte, queued replies and half-done command.

use std::collections::VecDeque;
use std::io::Write;

use serde::{Deserialize, Serialize};
use vm_superio::Serial;

use super::i8042::{
    CMD_WRITE_AUX, CMD_WRITE_CTR, CMD_WRITE_OUTPUT_PORT, MAX_QUEUED, SB_COMMAND, SB_KBD_ENABLED,
    SB_SYSTEM,
};
use super::{EventFdTrigger, SerialConsole, I8042};

/// Why a saved legacy device state cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum LegacyRestoreError {
    /// The UART state is not valid (its FIFO overflows).
    #[error("the saved serial console state is not valid")]
    Serial,
    /// The i8042 state is not one the controller can be in.
    #[error("the saved i8042 state is not valid")]
    I8042,
}

/// The 16550A's registers and receive FIFO.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialState {
    /// Divisor latch, low byte.
    pub baud_divisor_low: u8,
    /// Divisor latch, high byte.
    pub baud_divisor_high: u8,
    /// IER.
    pub interrupt_enable: u8,
    /// IIR.
    pub interrupt_identification: u8,
    /// LCR.
    pub line_control: u8,
    /// LSR.
    pub line_status: u8,
    /// MCR.
    pub modem_control: u8,
    /// MSR.
    pub modem_status: u8,
    /// SCR.
    pub scratch: u8,
    /// Bytes received and not read by the guest.
    pub in_buffer: Vec<u8>,
}

impl SerialConsole {
    /// The state to save.
    pub fn save(&self) -> SerialState {
        let s = self.uart.state();
        SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// A console in a saved state, raising `irq` and writing to `out`
    /// (raising the interrupt at once if the state has one pending).
    pub fn restore(
        irq: EventFdTrigger,
        out: Box<dyn Write + Send>,
        s: &SerialState,
    ) -> Result<Self, LegacyRestoreError> {
        let state = vm_superio::serial::SerialState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer.clone(),
        };
        let uart = Serial::from_state(&state, irq, vm_superio::serial::NoEvents, out)
            .map_err(|_| LegacyRestoreError::Serial)?;
        Ok(Self { uart })
    }
}

/// The i8042 as saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct I8042State {
    /// Status register (without the output-buffer-full bit, derived).
    pub status: u8,
    /// Control byte.
    pub control: u8,
    /// Reply bytes the guest has not read.
    pub replies: Vec<u8>,
    /// A command waiting for its data byte.
    pub awaiting: Option<u8>,
}

impl I8042 {
    /// The state to save.
    pub fn save(&self) -> I8042State {
        I8042State {
            status: self.status,
            control: self.control,
            replies: self.replies.iter().copied().collect(),
            awaiting: self.awaiting,
        }
    }

    /// A controller in a saved state, signalling `reset`.
    pub fn restore(reset: EventFdTrigger, s: &I8042State) -> Result<Self, LegacyRestoreError> {
        let known_status = SB_SYSTEM | SB_COMMAND | SB_KBD_ENABLED;
        let awaiting_ok = match s.awaiting {
            None => true,
            Some(c) => [CMD_WRITE_CTR, CMD_WRITE_OUTPUT_PORT, CMD_WRITE_AUX].contains(&c),
        };
        if s.status & !known_status != 0 || s.replies.len() > MAX_QUEUED || !awaiting_ok {
            return Err(LegacyRestoreError::I8042);
        }
        let mut k = I8042::new(reset);
        k.status = s.status;
        k.control = s.control;
        k.replies = VecDeque::from(s.replies.clone());
        k.awaiting = s.awaiting;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::BusDevice;
    use vmm_sys_util::eventfd::EventFd;

    fn trigger() -> EventFdTrigger {
        EventFdTrigger(EventFd::new(libc::EFD_NONBLOCK).unwrap())
    }

    #[test]
    fn the_uart_keeps_its_registers_and_unread_input() {
        let mut s = SerialConsole::new(trigger(), Box::new(std::io::sink()));
        s.write(3, &[0x03]); // LCR: 8 data bits
        s.write(7, &[0x5a]); // scratch
        s.write(1, &[0x01]); // IER: receive interrupts
        s.enqueue_input(b"hi");
        let saved = s.save();
        let json = serde_json::to_vec(&saved).unwrap();
        let back: SerialState = serde_json::from_slice(&json).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut r = SerialConsole::restore(
            EventFdTrigger(irq.try_clone().unwrap()),
            Box::new(std::io::sink()),
            &back,
        )
        .unwrap();
        assert_eq!(r.save(), saved);
        assert_eq!(
            irq.read().unwrap(),
            1,
            "pending receive interrupt re-raised"
        );
        let mut b = [0u8];
        r.read(7, &mut b);
        assert_eq!(b[0], 0x5a);
        r.read(0, &mut b);
        assert_eq!(b[0], b'h');
        let mut big = saved.clone();
        big.in_buffer = vec![0; 100_000];
        assert!(SerialConsole::restore(trigger(), Box::new(std::io::sink()), &big).is_err());
    }

    #[test]
    fn the_i8042_keeps_its_replies_and_refuses_impossible_states() {
        let mut k = I8042::new(trigger());
        k.write(4, &[0x20]); // read control byte: one reply queued
        k.write(4, &[0x60]); // write control byte: awaits data
        let saved = k.save();
        let mut r = I8042::restore(trigger(), &saved).unwrap();
        assert_eq!(r.save(), saved);
        r.write(0, &[0x47]);
        let mut b = [0u8];
        r.read(0, &mut b);
        assert_eq!(b[0], 0x01 | 0x04 | 0x40);
        for bad in [
            I8042State {
                replies: vec![0; MAX_QUEUED + 1],
                ..saved.clone()
            },
            I8042State {
                awaiting: Some(0xfe),
                ..saved.clone()
            },
            I8042State {
                status: 0xff,
                ..saved.clone()
            },
        ] {
            assert!(I8042::restore(trigger(), &bad).is_err());
        }
    }
}
