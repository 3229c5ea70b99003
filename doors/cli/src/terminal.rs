//! The host terminal for `hull run -t`: its size, and raw mode while a
//! container owns it (so Ctrl-C, Ctrl-D and line editing reach the
//! container's pty, as with `docker run -it`).

/// Rows and columns of the terminal on stdout (or stdin); else `LINES` and
/// `COLUMNS`; else 24×80.
pub fn size() -> (u16, u16) {
    for fd in [1, 0] {
        // SAFETY: all-zero is a valid winsize; TIOCGWINSZ writes into it.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: ioctl on a standard descriptor with a valid out-pointer.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0
            && ws.ws_row > 0
            && ws.ws_col > 0
        {
            return (ws.ws_row, ws.ws_col);
        }
    }
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<u16>().ok())
            .filter(|n| *n > 0)
    };
    (env("LINES").unwrap_or(24), env("COLUMNS").unwrap_or(80))
}

/// Raw mode on stdin for as long as this lives.
pub struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    /// Switches stdin to raw mode if it is a terminal.
    pub fn enable() -> Option<Self> {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a valid termios.
        unsafe {
            if libc::isatty(0) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(0, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(Self { saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enable`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.saved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_never_zero() {
        let (rows, cols) = size();
        assert!(rows > 0 && cols > 0);
    }
}
