//! `color`: whether the text output is coloured, and the few styles it
//! uses. `--color auto|always|never`; `auto` colours only a terminal, and
//! only while `NO_COLOR` is unset or empty (<https://no-color.org>).
//! `always` wins over `NO_COLOR`: it is asked for on this command line.
//!
//! The choice is made once per process (`main` calls [`set_choice`]) and
//! judged per stream ([`enabled`]): the text report can go to stdout or,
//! when the JSON takes stdout, to stderr. The JSON document and the pprof
//! file are never written through a [`Palette`], so they carry no escape
//! codes whatever the choice.
use std::{
    ffi::OsStr,
    fmt,
    sync::atomic::{AtomicU8, Ordering},
};

use anstyle::{AnsiColor, Style};

use crate::model::Verdict;

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour a terminal unless `NO_COLOR` is set to a non-empty value.
    #[default]
    Auto,
    /// Always colour, even a pipe or a file.
    Always,
    /// Never colour.
    Never,
}

/// Whether to colour a stream: `no_color` is the value of `NO_COLOR`,
/// `is_terminal` whether the stream is one. Pure.
#[must_use]
pub fn decide(choice: ColorChoice, no_color: Option<&OsStr>, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        // "present and not an empty string" disables colour (no-color.org).
        ColorChoice::Auto => is_terminal && no_color.is_none_or(OsStr::is_empty),
    }
}

static CHOICE: AtomicU8 = AtomicU8::new(0);

/// Records `--color` for the whole process.
pub fn set_choice(c: ColorChoice) {
    CHOICE.store(c as u8, Ordering::Relaxed);
}

/// The recorded `--color` (`auto` until set).
#[must_use]
pub fn choice() -> ColorChoice {
    match CHOICE.load(Ordering::Relaxed) {
        1 => ColorChoice::Always,
        2 => ColorChoice::Never,
        _ => ColorChoice::Auto,
    }
}

/// Whether a stream that is a terminal or not gets colour, under the
/// recorded choice and this process's `NO_COLOR`.
#[must_use]
pub fn enabled(is_terminal: bool) -> bool {
    decide(
        choice(),
        std::env::var_os("NO_COLOR").as_deref(),
        is_terminal,
    )
}

/// The styles of one stream: plain text when colour is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Palette {
    on: bool,
}

impl Palette {
    /// No colour (tests, pipes).
    pub const PLAIN: Self = Self { on: false };

    /// Colour or not.
    #[must_use]
    pub fn new(on: bool) -> Self {
        Self { on }
    }

    /// The palette of stdout under the recorded choice.
    #[must_use]
    pub fn stdout() -> Self {
        use std::io::IsTerminal as _;
        Self::new(enabled(std::io::stdout().is_terminal()))
    }

    /// Whether this palette colours.
    #[must_use]
    pub fn is_on(self) -> bool {
        self.on
    }

    fn paint<T: fmt::Display>(self, style: Style, text: T) -> Painted<T> {
        Painted {
            style: if self.on { Some(style) } else { None },
            text,
        }
    }

    /// A verdict in capitals: GROWING red, BLOATED yellow, the others plain.
    #[must_use]
    pub fn verdict(self, v: Verdict) -> Painted<String> {
        let style = match v {
            Verdict::Growing => Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            Verdict::Bloated => Style::new().fg_color(Some(AnsiColor::Yellow.into())),
            Verdict::Stable | Verdict::Idle => Style::new(),
        };
        self.paint(style, v.as_str().to_uppercase())
    }

    /// A heading: bold.
    #[must_use]
    pub fn heading<T: fmt::Display>(self, text: T) -> Painted<T> {
        self.paint(Style::new().bold(), text)
    }

    /// A failure: bold red.
    #[must_use]
    pub fn bad<T: fmt::Display>(self, text: T) -> Painted<T> {
        self.paint(
            Style::new().bold().fg_color(Some(AnsiColor::Red.into())),
            text,
        )
    }

    /// A warning: yellow.
    #[must_use]
    pub fn warn<T: fmt::Display>(self, text: T) -> Painted<T> {
        self.paint(Style::new().fg_color(Some(AnsiColor::Yellow.into())), text)
    }

    /// A pass: green.
    #[must_use]
    pub fn good<T: fmt::Display>(self, text: T) -> Painted<T> {
        self.paint(Style::new().fg_color(Some(AnsiColor::Green.into())), text)
    }
}

/// Text with a style, or none; displays as the text, wrapped in the style's
/// escape codes when it has one.
#[derive(Debug, Clone)]
pub struct Painted<T> {
    style: Option<Style>,
    text: T,
}

impl<T: fmt::Display> fmt::Display for Painted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.style {
            Some(s) => write!(f, "{s}{}{s:#}", self.text),
            None => self.text.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_colours_a_terminal_unless_no_color_is_set() {
        use ColorChoice::{Always, Auto, Never};
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        assert!(decide(Auto, None, true));
        assert!(!decide(Auto, None, false), "a pipe is never coloured");
        assert!(!decide(Auto, set, true), "NO_COLOR=1 on a terminal");
        assert!(decide(Auto, empty, true), "an empty NO_COLOR is unset");
        assert!(decide(Always, set, false), "--color always wins");
        assert!(!decide(Never, None, true));
    }

    #[test]
    fn a_plain_palette_writes_no_escape() {
        let p = Palette::PLAIN;
        let s = format!(
            "{} {} {}",
            p.verdict(Verdict::Growing),
            p.heading("Tracked maps:"),
            p.bad("FAIL")
        );
        assert_eq!(s, "GROWING Tracked maps: FAIL");
        let on = Palette::new(true);
        let g = on.verdict(Verdict::Growing).to_string();
        assert!(
            g.starts_with('\x1b') && g.contains("GROWING") && g.ends_with("\x1b[0m"),
            "{g:?}"
        );
        let b = on.verdict(Verdict::Bloated).to_string();
        assert!(b.contains("\x1b[33m"), "BLOATED is yellow: {b:?}");
        assert_ne!(g, b);
        // Stable and idle stay plain even with colour on.
        assert_eq!(on.verdict(Verdict::Stable).to_string(), "STABLE");
    }

    #[test]
    fn the_choice_is_recorded() {
        // The only test that sets the global choice.
        set_choice(ColorChoice::Never);
        assert_eq!(choice(), ColorChoice::Never);
        assert!(!enabled(true));
        set_choice(ColorChoice::Always);
        assert_eq!(choice(), ColorChoice::Always);
        assert!(enabled(false));
        set_choice(ColorChoice::Auto);
        assert_eq!(choice(), ColorChoice::Auto);
    }
}
