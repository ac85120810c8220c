//! Writing to stdout and stderr without ever panicking: `println!` and
//! `eprintln!` panic when the stream is a closed pipe (SIGPIPE is ignored,
//! so the write fails with EPIPE), and a shutdown message must not kill
//! the MCU because whoever read its stderr has gone. A leaf: imports
//! nothing from the crate.

/// `eprintln!` that ignores write errors.
#[macro_export]
macro_rules! elog {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// `println!` that ignores write errors.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out_raw!("{}\n", ::std::format_args!($($arg)*))
    };
}

/// `print!` that ignores write errors (and flushes: stdout is buffered).
#[macro_export]
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let mut o = ::std::io::stdout().lock();
        let _ = ::std::write!(o, $($arg)*);
        let _ = o.flush();
    }};
}
