//! Process-level set-up: real-time scheduling (`-r`), the hardware
//! watchdog (`-w`) and the re-execution `config_reset` performs.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// Start this program again with the same arguments. Returns only if the
/// exec failed.
pub fn reexec(args: &[CString]) {
    let exe = CString::new("/proc/self/exe").expect("no NUL");
    let argv: Vec<&std::ffi::CStr> = args.iter().map(|a| a.as_c_str()).collect();
    let err = nix::unistd::execv(&exe, &argv).unwrap_err();
    elog!("klipper_mcu: config_reset: cannot re-execute /proc/self/exe: {err}");
}

/// SCHED_FIFO at half the maximum priority, and all memory locked, as the
/// reference's `-r`. On refusal, say what is missing.
pub fn realtime_setup() -> Result<(), String> {
    // nix has no wrapper for the scheduling policy calls.
    let prio = unsafe { libc::sched_get_priority_max(libc::SCHED_FIFO) } / 2;
    let sp = libc::sched_param {
        sched_priority: prio,
    };
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &sp) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "-r: sched_setscheduler(SCHED_FIFO, priority {prio}) refused: {e}. \
             Real-time scheduling needs CAP_SYS_NICE (docker/podman: --cap-add=SYS_NICE; \
             systemd: AmbientCapabilities=CAP_SYS_NICE) or an rtprio limit (ulimit -r {prio})."
        ));
    }
    use nix::sys::mman::{mlockall, MlockAllFlags};
    if let Err(e) = mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        return Err(format!(
            "-r: mlockall refused: {e}. Locking memory needs CAP_IPC_LOCK or a memlock \
             limit above this process's size (docker/podman: --ulimit memlock=-1:-1; \
             systemd: LimitMEMLOCK=infinity)."
        ));
    }
    Ok(())
}

/// The hardware watchdog, fed every second while the loop runs.
pub struct Watchdog {
    file: File,
    next: u32,
}

impl Watchdog {
    pub fn open() -> Result<Watchdog, String> {
        let path = "/dev/watchdog";
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                format!(
                    "-w: cannot open {path}: {e}. Pass the device to the container \
                     (--device {path}) and run as a user that may write it."
                )
            })?;
        Ok(Watchdog { file, next: 0 })
    }

    /// Feed the watchdog if a second has passed since the last time.
    pub fn feed(&mut self, now: u32) {
        if crate::clock::is_before(now, self.next) {
            return;
        }
        self.next = now.wrapping_add(crate::clock::from_us(1_000_000));
        if let Err(e) = self.file.write(b".") {
            elog!("klipper_mcu: watchdog write: {e}");
        }
    }

    pub fn next_feed(&self) -> u32 {
        self.next
    }
}
