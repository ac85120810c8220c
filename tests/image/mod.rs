//! What the image tests share (`tests/container.rs`, `tests/arch.rs`):
//! running commands, podman configured for the tests alone, running the
//! image as deployed, and the host's end of an MCU's terminal.

#![allow(dead_code)]

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use klipper_protocol::dictionary::Dictionary;
use klipper_protocol::host::{HostCodec, Response};

#[path = "../simboard/port.rs"]
mod port;

/// A short name for this checkout's `state` folder (for run-time folders
/// and container names).
pub fn tag(state: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    state.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// How long the MCU may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run a command to completion, capturing its output.
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Run a command; panic with its output unless it succeeds. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!(
            "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why podman cannot be used here, if it cannot: not root (rootful
/// podman, apt-get), or podman and runc missing and apt-get unable to
/// install them. Installs them from Debian's packages when missing.
pub fn podman_unavailable(log: &dyn Fn(&str)) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (rootful podman, apt-get)".into());
    }
    if have("podman") && have("runc") {
        return None;
    }
    log("installing podman and runc with apt-get");
    let apt = |args: &[&str]| -> Result<(), String> {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-q", "-y", "-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive");
        let out = crate::hosttools::output_of(&mut cmd, "apt-get")?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{} failed ({}): {}",
            describe(&cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    };
    if let Err(e) = apt(&["update"]).and_then(|()| apt(&["install", "podman", "runc"])) {
        return Some(format!("podman and runc missing, and {e}"));
    }
    if !(have("podman") && have("runc")) {
        return Some("podman/runc still missing after apt-get install".into());
    }
    None
}

/// Podman, configured for this test only.
pub struct Podman {
    conf: PathBuf,
    storage_conf: PathBuf,
}

impl Podman {
    pub fn setup(state: &Path, run_root: &Path) -> Podman {
        let d = |p: &str| state.join(p);
        for p in ["graph", "networks", "volumes"] {
            std::fs::create_dir_all(d(p)).unwrap();
        }
        std::fs::create_dir_all(run_root).unwrap();
        let conf = d("containers.conf");
        std::fs::write(
            &conf,
            format!(
                "# Written by tests/image: podman for these tests only.\n\
                 [containers]\n\
                 default_ulimits = []\n\
                 log_driver = \"k8s-file\"\n\
                 [network]\n\
                 network_config_dir = \"{net}\"\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 runtime = \"runc\"\n\
                 events_logger = \"file\"\n\
                 tmp_dir = \"{tmp}\"\n\
                 volume_path = \"{vol}\"\n",
                net = d("networks").display(),
                tmp = run_root.join("libpod").display(),
                vol = d("volumes").display(),
            ),
        )
        .unwrap();
        let storage_conf = d("storage.conf");
        std::fs::write(
            &storage_conf,
            format!(
                "# Written by tests/image.\n\
                 [storage]\n\
                 driver = \"vfs\"\n\
                 graphroot = \"{}\"\n\
                 runroot = \"{}\"\n",
                d("graph").display(),
                run_root.join("storage").display()
            ),
        )
        .unwrap();
        Podman { conf, storage_conf }
    }

    /// Podman keeping its images and containers under `state`, and what
    /// it keeps at run time under a short per-checkout folder of the
    /// system's temporary folder (socket paths have a length limit).
    pub fn for_state(state: &Path) -> Podman {
        std::fs::create_dir_all(state).unwrap();
        let run_root = std::env::temp_dir().join(format!("klipper-mcu-podman-{}", tag(state)));
        Podman::setup(state, &run_root)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", &self.conf)
            .env("CONTAINERS_STORAGE_CONF", &self.storage_conf);
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        run(self.cmd().args(args))
    }

    pub fn output(&self, args: &[&str]) -> Output {
        output(self.cmd().args(args))
    }
}

/// The user and group the Dockerfile documents.
pub const UID: u32 = 1000;
pub const GID: u32 = 1000;

impl Podman {
    /// What the container printed.
    pub fn logs(&self, name: &str) -> String {
        let out = self.output(&["logs", name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `podman inspect NAME --format FORMAT`, trimmed.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.run(&["inspect", name, "--format", format])
            .trim()
            .to_string()
    }

    /// Wait for the MCU in container `name` to link its terminal at `link`
    /// (a host path); returns the link's target.
    pub fn wait_link(&self, name: &str, link: &Path) -> PathBuf {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(t) = std::fs::read_link(link) {
                if t.exists() {
                    return t;
                }
            }
            let state = self.inspect(name, "{{.State.Status}}");
            if state != "running" && state != "created" {
                panic!("container {state}; logs:\n{}", self.logs(name));
            }
            assert!(
                Instant::now() < deadline,
                "no link at {} after {TIMEOUT:?}; logs:\n{}",
                link.display(),
                self.logs(name)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `podman stop` (SIGTERM): the MCU must exit with status 0 within a
    /// few seconds, remove its link, and hang up the host's end.
    pub fn stop_cleanly(&self, name: &str, port: &mut Port, link: &Path, log: &dyn Fn(&str)) {
        let stop0 = Instant::now();
        self.run(&["stop", "-t", "10", name]);
        let took = stop0.elapsed();
        let code = self.inspect(name, "{{.State.ExitCode}}");
        log(&format!("podman stop took {took:?}, exit status {code}"));
        assert_eq!(
            code,
            "0",
            "exit status after SIGTERM; logs:\n{}",
            self.logs(name)
        );
        assert!(
            took < Duration::from_secs(5),
            "stopping took {took:?} (SIGTERM not honoured?)"
        );
        assert!(
            std::fs::symlink_metadata(link).is_err(),
            "the link {} is still there after a clean exit",
            link.display()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while !port.hung_up && Instant::now() < deadline {
            port.poll(Duration::from_millis(50));
        }
        assert!(
            port.hung_up,
            "the host's end of the terminal did not hang up"
        );
    }
}

/// `podman run -d` as deploy/README.md recommends: no network, no
/// capabilities, read-only root, no privilege gain; the host folder
/// `run_dir` at /opt/printer_data/run and the host's /dev shared, so that
/// /dev/ptmx and /dev/pts are the host's (a bind of /dev/pts alone leaves
/// /dev/ptmx a link to the host's pts/ptmx, mode 000; the device cgroup
/// still allows only the default nodes). The image and what follows it
/// are the caller's to add.
pub fn run_args(name: &str, run_dir: &Path) -> Vec<String> {
    let volume = format!("{}:/opt/printer_data/run", run_dir.display());
    [
        "run",
        "-d",
        "--pull=never",
        "--name",
        name,
        "--network",
        "none",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-v",
        &volume,
        "-v",
        "/dev:/dev",
    ]
    .map(String::from)
    .to_vec()
}

/// Removes the container, the images named and dangling images, and the
/// run folder, however the test ends.
pub struct Cleanup<'a> {
    pub podman: &'a Podman,
    pub name: String,
    pub images: Vec<String>,
    pub run_dir: PathBuf,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            let _ = self
                .podman
                .output(&["rm", "-f", "-t", "2", "--ignore", &self.name]);
        }
        for i in &self.images {
            let _ = self.podman.output(&["image", "rm", "-f", i]);
        }
        let _ = self.podman.output(&["image", "prune", "-f"]);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// The host's end of the MCU's terminal, opened as klippy opens it.
pub struct Port {
    file: File,
    pub codec: HostCodec,
    pub msgs: Vec<Response>,
    pub hung_up: bool,
}

impl Port {
    pub fn open(link: &Path) -> Port {
        let file = port::open_raw(link);
        Port {
            file,
            codec: HostCodec::new(),
            msgs: Vec::new(),
            hung_up: false,
        }
    }

    pub fn send(&mut self, text: &str) {
        let payload = self
            .codec
            .encode_text(text)
            .unwrap_or_else(|e| panic!("encode {text:?}: {e}"));
        let block = self.codec.frame(&payload);
        let mut data = &block[..];
        let deadline = Instant::now() + TIMEOUT;
        while !data.is_empty() {
            let n = unsafe { libc::write(self.file.as_raw_fd(), data.as_ptr().cast(), data.len()) };
            if n > 0 {
                data = &data[n as usize..];
                continue;
            }
            let e = std::io::Error::last_os_error();
            assert!(
                n == 0 || matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
                "write to the MCU's terminal: {e}"
            );
            assert!(Instant::now() < deadline, "the MCU stopped reading");
            self.poll(Duration::from_millis(20));
        }
    }

    /// Wait up to `timeout` for input; read and decode all of it.
    pub fn poll(&mut self, timeout: Duration) {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if r <= 0 {
            return;
        }
        if pfd.revents & libc::POLLHUP != 0 {
            self.hung_up = true;
        }
        let mut buf = [0u8; 4096];
        loop {
            let n =
                unsafe { libc::read(self.file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                // The other side closed: EOF (0) or EIO, depending on
                // the kernel.
                if n == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EIO) {
                    self.hung_up = true;
                }
                return;
            }
            for b in self.codec.feed(&buf[..n as usize]) {
                if b.payload.is_empty() {
                    continue; // an ack
                }
                // Messages the bootstrap dictionary cannot name (`starting`
                // before identify) are of no interest here.
                if let Ok(ms) = self.codec.decode(&b.payload) {
                    self.msgs.extend(ms);
                }
            }
        }
    }

    pub fn wait_msg(&mut self, name: &str, pred: impl Fn(&Response) -> bool) -> Response {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.msgs.iter().position(|r| r.name == name && pred(r)) {
                return self.msgs.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "no `{name}` from the MCU within {TIMEOUT:?}; got {:?}",
                self.msgs
            );
            self.poll(Duration::from_millis(100));
        }
    }

    /// Fetch the whole data dictionary and install it.
    pub fn identify(&mut self) -> usize {
        let mut data = Vec::new();
        loop {
            let offset = data.len();
            self.send(&format!("identify offset={offset} count=40"));
            let r = self.wait_msg("identify_response", |r| r.int("offset") == offset as i64);
            let chunk = r.bytes("data");
            if chunk.is_empty() {
                break;
            }
            data.extend_from_slice(chunk);
            assert!(data.len() < 1 << 20, "dictionary too large");
        }
        self.codec.dict = Dictionary::from_compressed(&data)
            .unwrap_or_else(|e| panic!("the dictionary does not decompress/parse: {e}"));
        data.len()
    }
}
