//! Stalls of the machine itself, for the tests that run the MCU with
//! `-r` and check that nothing was lost (`simboard`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest the machine itself stopped running a real-time thread
/// pinned to each CPU, one priority above the MCU's `-r` (so neither the
/// MCU nor other tests' MCUs can delay it): a stall it sees is the
/// hypervisor or the kernel not running that CPU, which no scheduling
/// policy inside the machine prevents. Observed on this project's
/// machine kind (a KVM guest): an `-r` MCU asleep in `ppoll` woken
/// 100 ms after its timer, neither running nor runnable in between.
pub struct StallWatch {
    stop: Arc<AtomicBool>,
    worst_ns: Arc<AtomicU64>,
    total_ns: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// How often each watching thread wakes.
const WATCH_PERIOD: Duration = Duration::from_millis(1);

impl StallWatch {
    /// Watch every CPU this process may run on; None if SCHED_FIFO is not
    /// allowed here.
    pub fn start() -> Option<StallWatch> {
        if !super::rt::fifo_allowed() {
            return None;
        }
        // SAFETY: the set is ours; sched_getaffinity fills it.
        let cpus: Vec<usize> = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
                return None;
            }
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let worst_ns = Arc::new(AtomicU64::new(0));
        let total_ns = Arc::new(AtomicU64::new(0));
        let threads = cpus
            .into_iter()
            .map(|cpu| {
                let (stop, worst_ns, total_ns) = (stop.clone(), worst_ns.clone(), total_ns.clone());
                std::thread::spawn(move || watch(cpu, &stop, &worst_ns, &total_ns))
            })
            .collect();
        Some(StallWatch {
            stop,
            worst_ns,
            total_ns,
            threads,
        })
    }

    /// The longest stall seen so far (beyond the watch's own period).
    pub fn worst(&self) -> Duration {
        Duration::from_nanos(self.worst_ns.load(Ordering::Relaxed))
    }

    /// All stalls of at least [`COUNTED_STALL`] so far, added up over the
    /// CPUs: at least the time any one CPU (the MCU's among them) lost.
    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.total_ns.load(Ordering::Relaxed))
    }
}

impl Drop for StallWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The shortest stall [`StallWatch::total`] counts: shorter ones are the
/// watch's own wake-up jitter.
const COUNTED_STALL: Duration = Duration::from_micros(500);

/// One watching thread, pinned to `cpu`.
fn watch(cpu: usize, stop: &AtomicBool, worst_ns: &AtomicU64, total_ns: &AtomicU64) {
    // SAFETY: plain system calls on the calling thread (pid 0) with
    // values we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            return;
        }
        // The MCU's -r priority is half the maximum.
        let prio = libc::sched_get_priority_max(libc::SCHED_FIFO) / 2 + 1;
        let sp = libc::sched_param {
            sched_priority: prio,
        };
        if libc::sched_setscheduler(0, libc::SCHED_FIFO, &sp) != 0 {
            return;
        }
    }
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        std::thread::sleep(WATCH_PERIOD);
        let late = t.elapsed().saturating_sub(WATCH_PERIOD).as_nanos() as u64;
        worst_ns.fetch_max(late, Ordering::Relaxed);
        if late >= COUNTED_STALL.as_nanos() as u64 {
            total_ns.fetch_add(late, Ordering::Relaxed);
        }
    }
}
