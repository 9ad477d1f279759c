//! `progress`: one line on stderr while slow start-up work runs (reading
//! the symbols and DWARF of a large binary), cleared when it is done. Shown
//! only when stderr is a terminal: a pipe, a file or a log collector gets
//! nothing.
use std::{
    io::{IsTerminal as _, Write as _},
    path::Path,
};

/// Binaries smaller than this are read too fast for a line to help.
pub const MIN_BYTES: u64 = 16 << 20;

/// The line shown while `path`, of `bytes`, is read.
#[must_use]
pub fn reading_line(path: &Path, bytes: u64) -> String {
    format!(
        "reading symbols and DWARF of {} ({} MiB)…",
        path.display(),
        bytes.div_ceil(1 << 20)
    )
}

/// Whether to show a line for a binary of `bytes` on a stderr that is a
/// terminal or not. Pure.
#[must_use]
pub fn should_show(stderr_is_terminal: bool, bytes: u64) -> bool {
    stderr_is_terminal && bytes >= MIN_BYTES
}

/// The shown line; dropping it clears it.
#[derive(Debug)]
#[must_use = "the line is cleared when this is dropped"]
pub struct Progress {
    shown: bool,
}

impl Progress {
    /// Shows [`reading_line`] for `path` (its size read here; `shown` is the
    /// name to print) when [`should_show`] says so.
    pub fn reading(path: &Path, shown: &Path) -> Self {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        let mut err = std::io::stderr();
        if !should_show(err.is_terminal(), bytes) {
            return Self { shown: false };
        }
        // A failed write to the terminal only loses the line.
        let _ = write!(err, "{}", reading_line(shown, bytes)).and_then(|()| err.flush());
        Self { shown: true }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            // Back to the start of the line, and erase it.
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K").and_then(|()| err.flush());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_file_and_its_size() {
        let l = reading_line(Path::new("/srv/api"), 123 << 20);
        assert_eq!(l, "reading symbols and DWARF of /srv/api (123 MiB)…");
        // A part of a MiB counts as one.
        assert!(reading_line(Path::new("x"), 1).contains("(1 MiB)"));
    }

    #[test]
    fn shown_only_on_a_terminal_for_a_large_binary() {
        assert!(should_show(true, MIN_BYTES));
        assert!(!should_show(false, 1 << 30), "not a terminal");
        assert!(!should_show(true, MIN_BYTES - 1), "small: quick to read");
    }

    #[test]
    fn nothing_is_shown_off_a_terminal() {
        // Under `cargo test` stderr may be a terminal; a tiny file is never
        // shown either way.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("small");
        std::fs::write(&f, b"x").unwrap();
        let p = Progress::reading(&f, &f);
        assert!(!p.shown);
    }
}
