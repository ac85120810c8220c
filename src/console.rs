//! The console: a pseudo-terminal whose slave side is linked at the `-I`
//! path for klippy to open as its serial port.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use klipper_protocol::block::{Found, Receiver};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::termios;

use crate::command::{Output, Shutdown};
use crate::mcu::Mcu;

pub const FORCE_SHUTDOWN: Shutdown = Shutdown("Force shutdown command");
const FORCE_SHUTDOWN_TEXT: &[u8] = b"FORCE_SHUTDOWN\n";

const RECEIVE_SIZE: usize = 4096;
/// Reads per pass of the loop, so timers are not starved by a flood.
const MAX_READS_PER_PASS: usize = 8;

pub struct Console {
    master: OwnedFd,
    // Held open so the master never sees a hang-up while no host is
    // attached (which would make poll spin).
    _slave: OwnedFd,
    link: PathBuf,
    tty_name: PathBuf,
    receiver: Receiver,
    rx: Box<[u8; RECEIVE_SIZE]>,
    rx_len: usize,
}

fn set_flags(fd: &OwnedFd) -> nix::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Make room for a symlink at `path`: a stale link is replaced; anything
/// else is left alone with an error.
fn clear_link_path(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the old link {}: {e}", path.display())),
        Ok(m) => Err(format!(
            "{} exists and is a {}, not a link to a terminal; refusing to delete it. \
             Remove it or pass another path with -I.",
            path.display(),
            if m.is_dir() {
                "directory"
            } else {
                "regular file or device"
            }
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot inspect {}: {e}", path.display())),
    }
}

impl Console {
    pub fn open(link: &Path) -> Result<Console, String> {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("openpty: {e}"))?;
        // Raw mode: no echo, no line editing, no output processing.
        let mut t = termios::tcgetattr(&pty.slave).map_err(|e| format!("tcgetattr: {e}"))?;
        termios::cfmakeraw(&mut t);
        termios::tcsetattr(&pty.slave, termios::SetArg::TCSANOW, &t)
            .map_err(|e| format!("tcsetattr: {e}"))?;
        set_flags(&pty.master).map_err(|e| format!("fcntl on pty master: {e}"))?;
        fcntl(pty.slave.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(|e| format!("fcntl on pty slave: {e}"))?;
        let tty_name = nix::unistd::ttyname(&pty.slave).map_err(|e| format!("ttyname: {e}"))?;
        clear_link_path(link)?;
        std::os::unix::fs::symlink(&tty_name, link).map_err(|e| {
            format!(
                "cannot create the link {} -> {}: {e}. Check that the folder exists \
                 and is writable by this user (in a container: mount the run folder).",
                link.display(),
                tty_name.display()
            )
        })?;
        // Let the host's group open the terminal, as the reference does.
        if let Err(e) = std::fs::set_permissions(
            &tty_name,
            std::os::unix::fs::PermissionsExt::from_mode(0o660),
        ) {
            elog!("klipper_mcu: chmod {}: {e}", tty_name.display());
        }
        Ok(Console {
            master: pty.master,
            _slave: pty.slave,
            link: link.to_path_buf(),
            tty_name,
            receiver: Receiver::new(),
            rx: Box::new([0; RECEIVE_SIZE]),
            rx_len: 0,
        })
    }

    pub fn raw_fd(&self) -> i32 {
        self.master.as_raw_fd()
    }

    pub fn tty_name(&self) -> &Path {
        &self.tty_name
    }

    /// Read what the host sent and dispatch every complete block. Returns
    /// true if any bytes arrived.
    pub fn process_input(&mut self, mcu: &mut Mcu) -> bool {
        let mut got = false;
        for _ in 0..MAX_READS_PER_PASS {
            let free = &mut self.rx[self.rx_len..];
            let n = match nix::unistd::read(self.master.as_raw_fd(), free) {
                Ok(0) => break,
                Ok(n) => n,
                // EAGAIN: nothing more for now. Other errors are transient
                // on a pty whose slave we hold open; report and go on.
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => break,
                Err(e) => {
                    elog!("klipper_mcu: read from pty: {e}");
                    break;
                }
            };
            got = true;
            let new = &self.rx[self.rx_len..self.rx_len + n];
            if new.starts_with(FORCE_SHUTDOWN_TEXT) {
                mcu.shutdown(FORCE_SHUTDOWN);
            }
            self.rx_len += n;
            self.dispatch(mcu);
            self.flush(&mut mcu.out);
            if n < RECEIVE_SIZE / 2 {
                break;
            }
        }
        got
    }

    fn dispatch(&mut self, mcu: &mut Mcu) {
        let mut pos = 0;
        while pos < self.rx_len {
            match self.receiver.find_block(&self.rx[pos..self.rx_len]) {
                Found::NeedMore => break,
                Found::Block { len } => {
                    mcu.out.seq = self.receiver.next_sequence();
                    mcu.dispatch_block(&self.rx[pos..pos + len]);
                    mcu.out.send_ack();
                    pos += len;
                }
                Found::Skip { count, nak } => {
                    if nak {
                        mcu.out.seq = self.receiver.next_sequence();
                        mcu.out.send_ack();
                    }
                    pos += count;
                }
            }
        }
        self.rx.copy_within(pos..self.rx_len, 0);
        self.rx_len -= pos;
    }

    /// Write pending output; what the pty cannot take now stays queued.
    pub fn flush(&mut self, out: &mut Output) {
        while !out.is_empty() {
            match nix::unistd::write(&self.master, out.pending()) {
                Ok(n) if n > 0 => out.consume(n),
                _ => break,
            }
        }
    }

    /// Remove our link if it still points at our terminal (on exit).
    pub fn unlink(&self) {
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.tty_name) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}
