//! The leaf of the crate's module graph: why the MCU shuts down, and the
//! result every handler, timer and hardware call returns. Everything may
//! import this; it imports nothing of the crate.

/// Why the MCU shuts down: a static string the host shows the user. Every
/// reason a module can give must be listed in its `static_strings`, so
/// that the dictionary numbers it (a test checks the sources for this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown(pub &'static str);

/// What a command handler returns: an error shuts the MCU down.
pub type CmdResult = Result<(), Shutdown>;
