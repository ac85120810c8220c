//! `--check PATH`: a health check that never opens the pty (klippy owns
//! that conversation; a second reader would steal its bytes). Healthy when
//! PATH is a link to a live pseudo-terminal that a running klipper_mcu
//! process holds open.

use std::path::{Path, PathBuf};

/// Ok with a description of the MCU found, or why it is unhealthy.
pub fn check(link: &Path) -> Result<String, String> {
    let (tty, pid) = holder(link)?;
    Ok(format!(
        "{} -> {} held by klipper_mcu pid {pid}",
        link.display(),
        tty.display()
    ))
}

/// The terminal `link` points at and the pid of the running klipper_mcu
/// (other than this process) holding it open; or why there is none. A
/// new MCU refuses to replace such a link (it would steal a live MCU's
/// host), and replaces any other.
pub fn holder(link: &Path) -> Result<(PathBuf, u32), String> {
    let meta = std::fs::symlink_metadata(link).map_err(|e| format!("{}: {e}", link.display()))?;
    if !meta.file_type().is_symlink() {
        return Err(format!("{} is not a link to a terminal", link.display()));
    }
    let target = std::fs::read_link(link).map_err(|e| format!("{}: {e}", link.display()))?;
    let tty = if target.is_absolute() {
        target
    } else {
        link.parent().unwrap_or(Path::new("/")).join(target)
    };
    let tmeta = std::fs::metadata(&tty)
        .map_err(|e| format!("{} -> {}: {e}", link.display(), tty.display()))?;
    use std::os::unix::fs::FileTypeExt;
    if !tmeta.file_type().is_char_device() {
        return Err(format!("{} is not a terminal device", tty.display()));
    }
    let me = std::process::id();
    let procs = std::fs::read_dir("/proc").map_err(|e| format!("/proc: {e}"))?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() != "klipper_mcu" {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t: PathBuf| t == tty) {
                return Ok((tty, pid));
            }
        }
    }
    Err(format!(
        "no running klipper_mcu holds {} (link {})",
        tty.display(),
        link.display()
    ))
}
