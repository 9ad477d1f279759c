//! `mapleak-trace generate`: shell completions and man pages, written from
//! the command line's own definition (clap_complete, clap_mangen), so they
//! cannot drift from `--help`. To stdout, or into `--out DIR` for packagers.
use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::Command;
use clap_complete::Shell;

/// What to generate.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum What {
    /// A shell completion script (stdout, or a file in --out DIR named as
    /// the shell expects: mapleak-trace.bash, _mapleak-trace, mapleak-trace.fish, …).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
        /// Write the script into this directory instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// The man page, roff (stdout: mapleak-trace(1); with --out DIR, also
    /// one page per subcommand, mapleak-trace-inspect(1) and so on).
    Man {
        /// Write the pages into this directory instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Runs `generate` for `cmd` (the whole command line), writing to `stdout`
/// unless `--out` names a directory. Returns the files written.
pub fn run(what: &What, mut cmd: Command, stdout: &mut dyn Write) -> Result<Vec<PathBuf>> {
    let name = cmd.get_name().to_owned();
    match what {
        What::Completions { shell, out: None } => {
            clap_complete::generate(*shell, &mut cmd, name, stdout);
            Ok(Vec::new())
        }
        What::Completions {
            shell,
            out: Some(dir),
        } => {
            ensure_dir(dir)?;
            let path =
                clap_complete::generate_to(*shell, &mut cmd, name, dir).with_context(|| {
                    format!("writing the {shell} completions into {}", dir.display())
                })?;
            Ok(vec![path])
        }
        What::Man { out: None } => {
            clap_mangen::Man::new(cmd)
                .render(stdout)
                .context("writing the man page")?;
            Ok(Vec::new())
        }
        What::Man { out: Some(dir) } => {
            ensure_dir(dir)?;
            clap_mangen::generate_to(cmd.clone(), dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))?;
            Ok(man_pages(&cmd, dir))
        }
    }
}

fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {} (give a writable --out DIR, or none for stdout)",
            dir.display()
        )
    })
}

/// The pages `clap_mangen::generate_to` writes for `cmd`: one per command,
/// named `parent-child.1`, hidden ones and `help` left out.
fn man_pages(cmd: &Command, dir: &Path) -> Vec<PathBuf> {
    fn walk(cmd: &Command, prefix: &str, dir: &Path, out: &mut Vec<PathBuf>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_owned()
        } else {
            format!("{prefix}-{}", cmd.get_name())
        };
        out.push(dir.join(format!("{name}.1")));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, &name, dir, out);
        }
    }
    let mut out = Vec::new();
    walk(cmd, "", dir, &mut out);
    out.retain(|p| p.exists());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> Command {
        Command::new("demo")
            .arg(clap::arg!(--alpha "the alpha flag"))
            .subcommand(Command::new("sub").arg(clap::arg!(--beta <N> "the beta option")))
    }

    fn to_string(what: &What) -> String {
        let mut buf = Vec::new();
        let files = run(what, cmd(), &mut buf).unwrap();
        assert!(files.is_empty(), "stdout: no file");
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn completions_name_the_subcommands() {
        let bash = to_string(&What::Completions {
            shell: Shell::Bash,
            out: None,
        });
        assert!(bash.contains("complete") && bash.contains("sub"), "{bash}");
        assert!(bash.contains("--alpha") && bash.contains("--beta"));
        let fish = to_string(&What::Completions {
            shell: Shell::Fish,
            out: None,
        });
        assert!(fish.contains("complete -c demo"), "{fish}");
    }

    #[test]
    fn man_pages_go_to_stdout_or_one_file_per_command() {
        let page = to_string(&What::Man { out: None });
        assert!(
            page.starts_with(".ie") || page.contains(".TH demo"),
            "{page}"
        );
        assert!(page.contains("alpha"));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("man1");
        let files = run(
            &What::Man {
                out: Some(out.clone()),
            },
            cmd(),
            &mut Vec::new(),
        )
        .unwrap();
        assert_eq!(files, vec![out.join("demo.1"), out.join("demo-sub.1")]);
        let sub = std::fs::read_to_string(out.join("demo-sub.1")).unwrap();
        assert!(sub.contains("beta"), "{sub}");
    }

    #[test]
    fn an_unwritable_out_dir_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let e = run(
            &What::Man {
                out: Some(file.join("x")),
            },
            cmd(),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("writable --out DIR"), "{e:#}");
    }
}
