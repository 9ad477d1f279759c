//! `output`: where the reports go. The JSON file is created before anything
//! is attached (an unwritable path fails at once, not after an hour of
//! tracing), and the live view never stops the trace: once stdout is gone
//! (a closed pipe) it is no longer written, and the JSON is still written
//! at the end.
use std::{
    fs::File,
    io::{self, BufWriter, IsTerminal as _, Write},
    path::PathBuf,
};

use serde::Serialize;

use crate::{
    color::Palette,
    report::{Report, SCHEMA},
};

/// The JSON document: one shape for one or several processes.
#[derive(Debug, Serialize)]
pub struct Document<'a> {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// One report per traced process, in `--pid` order.
    pub processes: &'a [Report],
}

/// Where `--json` goes.
#[derive(Debug)]
pub enum JsonSink {
    /// `--json -`.
    Stdout,
    /// `--json FILE`, created (truncated) when the sink was opened.
    File(PathBuf, File),
}

/// Why the JSON report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `--json FILE` cannot be created.
    #[error(
        "cannot create the JSON report {}: {cause}; nothing was attached (give a writable path, or `--json -` for stdout)",
        path.display()
    )]
    Create {
        /// The path.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Writing it failed.
    #[error("writing the JSON report to {where_}: {cause}")]
    Write {
        /// The file, or "stdout".
        where_: String,
        /// The OS or serialization error.
        cause: io::Error,
    },
    /// `--pprof FILE` cannot be created.
    #[error(
        "cannot create the pprof profile {}: {cause}; nothing was attached (give a writable path)",
        path.display()
    )]
    CreatePprof {
        /// The path.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Writing the profile failed.
    #[error("writing the pprof profile to {}: {cause}", path.display())]
    WritePprof {
        /// The path.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
}

/// Where `--pprof` goes: a file created when the sink is opened.
#[derive(Debug)]
pub struct PprofSink {
    path: PathBuf,
    file: File,
}

impl PprofSink {
    /// Creates `path` now (an unwritable path fails before anything is
    /// attached).
    pub fn open(path: &str) -> Result<Self, OutputError> {
        let path = PathBuf::from(path);
        match File::create(&path) {
            Ok(file) => Ok(Self { path, file }),
            Err(cause) => Err(OutputError::CreatePprof { path, cause }),
        }
    }

    /// Writes `reports` as one gzipped profile of a trace that lasted
    /// `duration`.
    pub fn write(
        mut self,
        reports: &[Report],
        duration: std::time::Duration,
    ) -> Result<(), OutputError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let start = now.saturating_sub(duration);
        let bytes = crate::report::pprof::profile(
            reports,
            i64::try_from(start.as_nanos()).unwrap_or(i64::MAX),
            i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
        );
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.flush())
            .map_err(|cause| OutputError::WritePprof {
                path: self.path,
                cause,
            })
    }
}

impl JsonSink {
    /// Opens `spec` (`-` or a path): a file is created now.
    pub fn open(spec: &str) -> Result<Self, OutputError> {
        if spec == "-" {
            return Ok(Self::Stdout);
        }
        let path = PathBuf::from(spec);
        match File::create(&path) {
            Ok(f) => Ok(Self::File(path, f)),
            Err(cause) => Err(OutputError::Create { path, cause }),
        }
    }

    /// Whether the JSON goes to stdout (the live view then goes to stderr).
    #[must_use]
    pub fn is_stdout(&self) -> bool {
        matches!(self, Self::Stdout)
    }

    /// Writes `reports` as one [`Document`], serialized straight to the
    /// writer (a `serde_json::Value` of 100,000 maps would cost gigabytes).
    pub fn write(self, reports: &[Report]) -> Result<(), OutputError> {
        let doc = Document {
            schema: SCHEMA,
            processes: reports,
        };
        let (where_, w): (String, Box<dyn Write>) = match self {
            Self::Stdout => ("stdout".to_owned(), Box::new(io::stdout())),
            Self::File(path, f) => (path.display().to_string(), Box::new(f)),
        };
        let mut w = BufWriter::new(w);
        let res = serde_json::to_writer_pretty(&mut w, &doc)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(w))
            .and_then(|()| w.flush());
        res.map_err(|cause| OutputError::Write { where_, cause })
    }
}

/// The live view and the text report: stdout, or stderr when the JSON goes
/// to stdout. A write error (a closed pipe) silences it for the rest of the
/// run instead of ending the trace.
pub struct Console {
    w: Box<dyn Write>,
    tty: bool,
    palette: Palette,
    /// The first write error, if any.
    pub broken: Option<io::Error>,
}

impl Console {
    /// The console for a run whose JSON goes to stdout or not.
    #[must_use]
    pub fn new(json_to_stdout: bool) -> Self {
        if json_to_stdout {
            let tty = io::stderr().is_terminal();
            Self {
                tty,
                palette: Palette::new(crate::color::enabled(tty)),
                w: Box::new(io::stderr()),
                broken: None,
            }
        } else {
            let tty = io::stdout().is_terminal();
            Self {
                tty,
                palette: Palette::new(crate::color::enabled(tty)),
                w: Box::new(io::stdout()),
                broken: None,
            }
        }
    }

    /// A console writing to `w` (tests), without colour.
    #[must_use]
    pub fn to_writer(w: Box<dyn Write>, tty: bool) -> Self {
        Self {
            w,
            tty,
            palette: Palette::PLAIN,
            broken: None,
        }
    }

    /// The colours of the text written here (`--color`, `NO_COLOR`, and
    /// whether this stream is a terminal).
    #[must_use]
    pub fn palette(&self) -> Palette {
        self.palette
    }

    /// Whether the live view may redraw the screen.
    #[must_use]
    pub fn is_tty(&self) -> bool {
        self.tty
    }

    /// Runs `f` on the writer unless an earlier write failed; remembers a
    /// failure.
    pub fn emit(&mut self, f: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = f(&mut self.w).and_then(|()| self.w.flush()) {
            self.broken = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_console_stays_quiet() {
        let mut c = Console::to_writer(Box::new(Failing), false);
        let mut calls = 0;
        c.emit(|w| {
            calls += 1;
            writeln!(w, "x")
        });
        c.emit(|w| {
            calls += 1;
            writeln!(w, "y")
        });
        assert_eq!(calls, 1);
        assert_eq!(
            c.broken.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::BrokenPipe)
        );
    }

    #[test]
    fn json_file_is_created_at_open_and_holds_one_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let sink = JsonSink::open(path.to_str().unwrap()).unwrap();
        assert!(path.exists(), "created before any report");
        sink.write(&[]).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["processes"].as_array().map(Vec::len), Some(0));
        let bad = dir.path().join("no/such/dir/r.json");
        let e = JsonSink::open(bad.to_str().unwrap()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("nothing was attached"), "{msg}");
        assert_eq!(msg.matches("os error").count(), 1, "{msg}");
    }
}
