//! `.go.buildinfo`: the Go version and the `build KEY=VALUE` settings.
//!
//! Layout (`go1.18:src/debug/buildinfo/buildinfo.go:readRawBuildInfo`, written
//! by `cmd/link/internal/ld/data.go:buildinfo`): 14-byte magic
//! `"\xff Go buildinf:"`, pointer size @14, flags @15 (0x2 = strings inline,
//! the only format Go 1.18+ linkers write), two pointers @16, then from @32
//! two uvarint-length-prefixed strings: the version and the module info.

/// `"\xff Go buildinf:"`.
pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";

/// Flag bit: version and modinfo are inline (Go 1.18+ linkers).
const FLAG_INLINE: u8 = 0x2;

/// Parsed build information.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// Version string as stored, e.g. `go1.25.14 X:noswissmap`.
    pub version: String,
    /// `path` line of the module info (main package path), if any.
    pub path: Option<String>,
    /// `build KEY=VALUE` settings, in order.
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// The value of a `build KEY=VALUE` setting.
    #[must_use]
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// GOEXPERIMENT entries, from the `build GOEXPERIMENT=` setting and the
    /// version's ` X:` suffix, deduplicated.
    #[must_use]
    pub fn experiments(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let from_setting = self.setting("GOEXPERIMENT").unwrap_or("");
        let from_version = self.version.split_once(" X:").map_or("", |(_, x)| x);
        for e in from_setting.split(',').chain(from_version.split(',')) {
            let e = e.trim();
            if !e.is_empty() && !out.iter().any(|o| o == e) {
                out.push(e.to_owned());
            }
        }
        out
    }
}

/// Why the build info could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildInfoError {
    /// No magic at the start.
    #[error("no buildinfo magic")]
    NoMagic,
    /// Shorter than the fixed header, or a string runs past the end.
    #[error("buildinfo truncated")]
    Truncated,
    /// Pointer-based format (Go 1.17 and older linkers).
    #[error("pre-Go 1.18 buildinfo format")]
    OldFormat {
        /// Pointer size (4 or 8).
        ptr_size: u8,
        /// Big endian.
        big_endian: bool,
        /// Address of the `runtime.buildVersion` string header.
        version_ptr: u64,
    },
    /// The version string is not UTF-8 or is empty.
    #[error("buildinfo version string is invalid")]
    BadVersion,
}

/// Parses build info from bytes starting at the magic (the contents of
/// `.go.buildinfo`). Never panics.
pub fn parse(data: &[u8]) -> Result<BuildInfo, BuildInfoError> {
    if data.len() < 16 || &data[..14] != MAGIC.as_slice() {
        return if data.starts_with(MAGIC) || MAGIC.starts_with(data) {
            Err(BuildInfoError::Truncated)
        } else {
            Err(BuildInfoError::NoMagic)
        };
    }
    let ptr_size = data[14];
    let flags = data[15];
    if flags & FLAG_INLINE == 0 {
        let big_endian = flags & 1 != 0;
        let version_ptr = match ptr_size {
            4 => data
                .get(16..20)
                .map(|b| {
                    let a = [b[0], b[1], b[2], b[3]];
                    u64::from(if big_endian {
                        u32::from_be_bytes(a)
                    } else {
                        u32::from_le_bytes(a)
                    })
                })
                .ok_or(BuildInfoError::Truncated)?,
            8 => data
                .get(16..24)
                .map(|b| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    if big_endian {
                        u64::from_be_bytes(a)
                    } else {
                        u64::from_le_bytes(a)
                    }
                })
                .ok_or(BuildInfoError::Truncated)?,
            _ => 0,
        };
        return Err(BuildInfoError::OldFormat {
            ptr_size,
            big_endian,
            version_ptr,
        });
    }
    let mut rest = data.get(32..).ok_or(BuildInfoError::Truncated)?;
    let version = read_string(&mut rest)?;
    let version = std::str::from_utf8(version).map_err(|_| BuildInfoError::BadVersion)?;
    if version.is_empty() {
        return Err(BuildInfoError::BadVersion);
    }
    let modinfo = read_string(&mut rest).unwrap_or(&[]);
    let mut info = BuildInfo {
        version: version.to_owned(),
        ..BuildInfo::default()
    };
    parse_modinfo(&mut info, modinfo);
    Ok(info)
}

/// Finds the buildinfo magic at a 16-byte-aligned offset of `data` (a data
/// segment, when section headers are missing). Returns the offset.
#[must_use]
pub fn find_magic(data: &[u8]) -> Option<usize> {
    (0..data.len())
        .step_by(16)
        .find(|&off| data.get(off..).is_some_and(|d| d.starts_with(MAGIC)))
}

/// Reads a uvarint-length-prefixed byte string and advances `rest`.
fn read_string<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], BuildInfoError> {
    let (len, n) = uvarint(rest).ok_or(BuildInfoError::Truncated)?;
    let body = rest.get(n..).ok_or(BuildInfoError::Truncated)?;
    let len = usize::try_from(len).map_err(|_| BuildInfoError::Truncated)?;
    let s = body.get(..len).ok_or(BuildInfoError::Truncated)?;
    *rest = &body[len..];
    Ok(s)
}

/// Decodes an unsigned LEB128 varint; returns (value, bytes used).
#[must_use]
pub fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &b) in data.iter().enumerate().take(10) {
        let shift = u32::try_from(i * 7).ok()?;
        let part = u64::from(b & 0x7f).checked_shl(shift)?;
        v |= part;
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Module info lines, framed by 16-byte sentinels
/// (`go1.18:src/debug/buildinfo/buildinfo.go`: strip 16 bytes at each end when
/// `len >= 33 && mod[len-17] == '\n'`).
fn parse_modinfo(info: &mut BuildInfo, raw: &[u8]) {
    let body = if raw.len() >= 33 && raw[raw.len() - 17] == b'\n' {
        &raw[16..raw.len() - 16]
    } else {
        raw
    };
    let text = String::from_utf8_lossy(body);
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("path\t") {
            info.path = Some(p.to_owned());
        } else if let Some(kv) = line.strip_prefix("build\t")
            && let Some((k, v)) = kv.split_once('=')
        {
            info.settings
                .push((k.to_owned(), v.trim_matches('"').to_owned()));
        }
    }
}

/// Parses `go1.23.5`, `go1.21rc2`, `go1.25.14 X:noswissmap` or
/// `devel go1.24-abcdef …` into (raw without suffix, major, minor, patch).
#[must_use]
pub fn parse_version(s: &str) -> Option<(String, u32, u32, u32)> {
    let raw = s.split(" X:").next().unwrap_or(s).trim();
    let start = raw.find("go1")?;
    let tail = &raw[start + 2..];
    let mut nums = [0u32; 3];
    let mut idx = 0;
    let mut cur = String::new();
    for c in tail.chars() {
        if c.is_ascii_digit() {
            cur.push(c);
        } else {
            if cur.is_empty() {
                break;
            }
            nums[idx] = cur.parse().ok()?;
            cur.clear();
            idx += 1;
            if c != '.' || idx == 3 {
                break;
            }
        }
    }
    if !cur.is_empty() && idx < 3 {
        nums[idx] = cur.parse().ok()?;
        idx += 1;
    }
    if idx < 2 {
        return None;
    }
    let shown = if raw.starts_with("go") {
        raw.to_owned()
    } else {
        raw[start..].to_owned()
    };
    let shown = shown.split_whitespace().next().unwrap_or("").to_owned();
    Some((shown, nums[0], nums[1], nums[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version strings of every shape the linker writes parse to numbers.
    #[test]
    fn versions() {
        assert_eq!(
            parse_version("go1.23.12"),
            Some(("go1.23.12".into(), 1, 23, 12))
        );
        assert_eq!(parse_version("go1.18"), Some(("go1.18".into(), 1, 18, 0)));
        assert_eq!(
            parse_version("go1.25.14 X:noswissmap"),
            Some(("go1.25.14".into(), 1, 25, 14))
        );
        assert_eq!(
            parse_version("go1.21rc2"),
            Some(("go1.21rc2".into(), 1, 21, 0))
        );
        assert_eq!(
            parse_version("devel go1.24-37f27fbecd Fri"),
            Some(("go1.24-37f27fbecd".into(), 1, 24, 0))
        );
        assert_eq!(parse_version("garbage"), None);
    }

    /// Arbitrary prefixes of a valid blob never panic.
    #[test]
    fn truncations() {
        let mut blob = MAGIC.to_vec();
        blob.extend_from_slice(&[8, 2]);
        blob.extend_from_slice(&[0; 16]);
        blob.push(9);
        blob.extend_from_slice(b"go1.23.12");
        blob.push(0);
        assert_eq!(parse(&blob).map(|b| b.version), Ok("go1.23.12".to_owned()));
        for n in 0..blob.len() - 1 {
            assert!(parse(&blob[..n]).is_err() || n >= 42);
        }
    }
}
