//! Whether the tests can give the MCU `-r`: shared by `simboard` and
//! `support`.

/// Whether this process may use SCHED_FIFO (root in a container without
/// CAP_SYS_NICE may not, and the MCU's `-r` would refuse to start): tried
/// on a throw-away thread, once.
pub fn fifo_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        std::thread::spawn(|| {
            let sp = libc::sched_param { sched_priority: 1 };
            // SAFETY: a plain system call on the calling thread (pid 0).
            let ok = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &sp) } == 0;
            if !ok {
                eprintln!("tests: SCHED_FIFO refused here: the MCU runs without -r");
            }
            ok
        })
        .join()
        .unwrap_or(false)
    })
}
