//! Keys as text. Strings are redacted unless asked: a short prefix, the
//! length and a hash (`"tok-…" (len 18, #3fa2c19b)`), so reports can show
//! which keys stay without printing tokens or e-mail addresses.
use std::fmt::Write as _;

use super::{InterfaceValues, Key, KeyKind, KeyType, StrVal, le64};

/// Characters of a string shown with `show_keys` (beyond: an ellipsis).
pub const SHOW_CHARS: usize = 256;
/// Most characters of a redacted string's prefix (at most half the string).
pub const PREFIX_CHARS: usize = 4;
/// Array elements shown.
const MAX_ELEMS: u64 = 16;
/// Nesting shown.
const MAX_DEPTH: u32 = 4;
/// Output length after which fields and elements are elided.
const MAX_OUT: usize = 1024;

struct Ctx<'a> {
    key: &'a Key,
    show: bool,
    /// Shows what an interface holds; without it, its two words.
    iface: Option<&'a dyn InterfaceValues>,
    /// Index of the next string leaf in `key.strs`.
    si: u64,
    out: String,
}

/// Renders `key` of type `kt`. `show_keys`: strings in full (up to
/// [`SHOW_CHARS`]); otherwise redacted.
#[must_use]
pub fn render(key: &Key, kt: &KeyType, show_keys: bool) -> String {
    render_with(key, kt, show_keys, None)
}

/// [`render`], interfaces shown by the value they hold through `iface`
/// ([`super::dynamic`]).
#[must_use]
pub fn render_with(
    key: &Key,
    kt: &KeyType,
    show_keys: bool,
    iface: Option<&dyn InterfaceValues>,
) -> String {
    let mut c = Ctx {
        key,
        show: show_keys,
        iface,
        si: 0,
        out: String::new(),
    };
    value(&mut c, kt, 0, 0, true);
    c.out
}

/// Escapes bytes the way Go's `%q` does for printable text: `\"`, `\\`,
/// `\n`, `\t`, `\r`, other control characters as `\u{..}`, invalid UTF-8 as
/// `\xNN`. At most `max_chars` characters; returns whether all fitted.
pub fn escape_bytes(out: &mut String, b: &[u8], max_chars: usize) -> bool {
    let mut n = 0usize;
    for chunk in b.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if n == max_chars {
                return false;
            }
            n += 1;
            match ch {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for x in chunk.invalid() {
            if n == max_chars {
                return false;
            }
            n += 1;
            let _ = write!(out, "\\x{x:02x}");
        }
    }
    true
}

/// The hash a report shows for a string: its identity hash, keyed with a
/// key drawn at random for this run (SipHash through `RandomState`). The
/// same key shows the same hash throughout a run, so reports can be
/// followed; across runs it differs, and without the key a guess of a
/// low-entropy key (an email, a user id) cannot be checked against it.
fn shown_hash(identity: u64) -> u32 {
    use std::hash::BuildHasher as _;
    static KEY: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    (KEY.get_or_init(std::hash::RandomState::new)
        .hash_one(identity)
        >> 32) as u32
}

fn string(c: &mut Ctx<'_>, s: Option<&StrVal>, header_len: Option<u64>) {
    let Some(s) = s else {
        // Content not read (past MAX_STR_LEAVES).
        match header_len {
            Some(n) => {
                let _ = write!(c.out, "\"?\" (len {n})");
            }
            None => c.out.push('…'),
        }
        return;
    };
    let Some(text) = s.text.as_deref() else {
        let _ = write!(c.out, "\"?\" (len {}, unreadable)", s.len);
        return;
    };
    if s.len == 0 {
        c.out.push_str("\"\"");
        return;
    }
    let hash = shown_hash(s.hash);
    c.out.push('"');
    if c.show {
        let all = escape_bytes(&mut c.out, text, SHOW_CHARS);
        if all && text.len() as u64 == s.len {
            c.out.push('"');
        } else {
            let _ = write!(c.out, "…\" (len {}, #{hash:08x})", s.len);
        }
        return;
    }
    // A few leading characters, never more than half the string.
    let chars = String::from_utf8_lossy(text).chars().count();
    let total = if text.len() as u64 == s.len {
        chars
    } else {
        usize::MAX
    };
    let keep = PREFIX_CHARS.min(total / 2);
    let prefix: String = String::from_utf8_lossy(text).chars().take(keep).collect();
    escape_bytes(&mut c.out, prefix.as_bytes(), keep);
    let _ = write!(c.out, "…\" (len {}, #{hash:08x})", s.len);
}

fn int(b: &[u8], signed: bool) -> Option<String> {
    if b.is_empty() {
        return None;
    }
    let mut w = [0u8; 8];
    w.get_mut(..b.len())?.copy_from_slice(b);
    let u = u64::from_le_bytes(w);
    if signed {
        let shift = 64 - 8 * b.len() as u32;
        Some(((u.cast_signed() << shift) >> shift).to_string())
    } else {
        Some(u.to_string())
    }
}

fn float(b: &[u8]) -> Option<String> {
    match b.len() {
        4 => Some(f32::from_le_bytes(b.try_into().ok()?).to_string()),
        8 => Some(f64::from_le_bytes(b.try_into().ok()?).to_string()),
        _ => None,
    }
}

fn hex(out: &mut String, b: &[u8]) {
    out.push_str("0x");
    for x in b {
        let _ = write!(out, "{x:02x}");
    }
}

fn pointer(out: &mut String, p: u64, name: &str) {
    if p == 0 {
        let _ = write!(out, "nil ({name})");
    } else {
        let _ = write!(out, "{p:#x} ({name})");
    }
}

/// Appends the value of type `kt` at `off` in the key.
fn value(c: &mut Ctx<'_>, kt: &KeyType, off: u64, depth: u32, top: bool) {
    let raw = c.key.raw.as_bytes();
    let bytes = usize::try_from(off)
        .ok()
        .zip(usize::try_from(off.saturating_add(kt.size)).ok())
        .and_then(|(a, e)| raw.get(a..e));
    match &kt.kind {
        KeyKind::String => {
            let s = usize::try_from(c.si).ok().and_then(|i| c.key.strs.get(i));
            c.si += 1;
            let n = le64(raw, off + 8);
            string(c, s, n);
            return;
        }
        KeyKind::Struct(fs) => {
            if depth >= MAX_DEPTH {
                c.si += kt.string_leaves();
                c.out.push_str("{…}");
                return;
            }
            c.out.push('{');
            for (i, f) in fs.iter().enumerate() {
                if c.out.len() > MAX_OUT {
                    c.out.push_str(", …");
                    c.si += fs[i..].iter().map(|f| f.ty.string_leaves()).sum::<u64>();
                    break;
                }
                if i > 0 {
                    c.out.push_str(", ");
                }
                let _ = write!(c.out, "{}: ", f.name);
                value(c, &f.ty, off + f.offset, depth + 1, false);
            }
            c.out.push('}');
            return;
        }
        KeyKind::Array { elem, len } => {
            if depth >= MAX_DEPTH {
                c.si += kt.string_leaves();
                c.out.push_str("[…]");
                return;
            }
            c.out.push('[');
            let mut shown = (*len).min(MAX_ELEMS);
            for i in 0..shown {
                if c.out.len() > MAX_OUT {
                    shown = i;
                    break;
                }
                if i > 0 {
                    c.out.push_str(", ");
                }
                value(c, elem, off + i * elem.size, depth + 1, false);
            }
            if shown < *len {
                c.si += (len - shown) * elem.string_leaves();
                let _ = write!(c.out, ", … ({} more)", len - shown);
            }
            c.out.push(']');
            return;
        }
        _ => {}
    }
    let Some(b) = bytes else {
        // Past the bytes kept (RAW_CAP).
        c.out.push('…');
        return;
    };
    let text = match &kt.kind {
        KeyKind::Bool => b.first().map(|&x| (x != 0).to_string()),
        KeyKind::Int => int(b, true),
        KeyKind::Uint => int(b, false),
        KeyKind::Uintptr => le64(b, 0).map(|v| format!("{v:#x}")),
        KeyKind::Float => float(b),
        KeyKind::Complex => {
            let h = b.len() / 2;
            match (float(&b[..h]), float(&b[h..])) {
                (Some(re), Some(im)) if im.starts_with('-') => Some(format!("({re}{im}i)")),
                (Some(re), Some(im)) => Some(format!("({re}+{im}i)")),
                _ => None,
            }
        }
        KeyKind::Pointer | KeyKind::UnsafePointer | KeyKind::Chan => {
            if let Some(p) = le64(b, 0) {
                pointer(&mut c.out, p, &kt.name);
                return;
            }
            None
        }
        KeyKind::Interface => match (le64(b, 0), le64(b, 8)) {
            (Some(t), Some(d)) => {
                let empty = matches!(kt.name.as_str(), "interface {}" | "any");
                c.iface
                    .and_then(|iv| iv.render(t, d, empty, c.show))
                    .or_else(|| Some(format!("{t:#x}/{d:#x} ({})", kt.name)))
            }
            _ => None,
        },
        _ => None,
    };
    match text {
        Some(t) => c.out.push_str(&t),
        None => {
            hex(&mut c.out, b);
            if top {
                let _ = write!(c.out, " ({})", kt.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        super::{KeyField, RawKey},
        *,
    };

    #[test]
    fn shown_hashes_are_stable_in_a_run_and_keyed() {
        let (a, b) = (0x1234_5678_9abc_def0_u64, 0x0fed_cba9_8765_4321_u64);
        assert_eq!(shown_hash(a), shown_hash(a));
        assert_ne!(shown_hash(a), shown_hash(b));
        // Not the unkeyed identity hash a reader could recompute from a guess.
        assert_ne!(shown_hash(a), (a >> 32) as u32);
        assert_ne!(shown_hash(b), (b >> 32) as u32);
    }

    fn t(name: &str, size: u64, kind: KeyKind) -> KeyType {
        KeyType {
            name: name.into(),
            size,
            kind,
        }
    }

    fn sv(s: &[u8]) -> StrVal {
        let mut h = super::super::IdHasher::new();
        h.write(s);
        StrVal {
            len: s.len() as u64,
            hash: h.finish(),
            text: Some(s.into()),
        }
    }

    fn key(raw: &[u8], strs: Vec<StrVal>) -> Key {
        Key {
            id: 0,
            raw: RawKey::new(raw),
            ptr: None,
            strs,
        }
    }

    fn str_hdr(len: u64) -> Vec<u8> {
        let mut v = 0xc000_0000u64.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v
    }

    /// Redaction keeps at most 4 characters and at most half the string, and
    /// never the whole string; show_keys prints it escaped.
    #[test]
    fn strings_redacted_and_shown() {
        let st = t("string", 16, KeyKind::String);
        for s in ["tok-abcdefghijklmn", "ab", "x", "é✓é✓"] {
            let k = key(&str_hdr(s.len() as u64), vec![sv(s.as_bytes())]);
            let red = render(&k, &st, false);
            assert!(!red.contains(&format!("\"{s}\"")), "{red}");
            assert!(red.contains(&format!("(len {}, #", s.len())), "{red}");
            assert_eq!(render(&k, &st, true), format!("\"{s}\""));
        }
        let k = key(&str_hdr(18), vec![sv(b"tok-abcdefghijklmn")]);
        let red = render(&k, &st, false);
        assert!(red.starts_with("\"tok-…\" (len 18, #"), "{red}");
        let k = key(&str_hdr(0), vec![sv(b"")]);
        assert_eq!(render(&k, &st, false), "\"\"");
        let k = key(&str_hdr(6), vec![sv(b"a\"\n\t\\\xff")]);
        assert_eq!(render(&k, &st, true), r#""a\"\n\t\\\xff""#);
        // Longer than what was read: ellipsis and length.
        let long = vec![b'L'; 256];
        let mut s = sv(&long);
        s.len = 300;
        let k = key(&str_hdr(300), vec![s]);
        let shown = render(&k, &st, true);
        assert!(shown.starts_with(&format!("\"{}…\" (len 300, #", "L".repeat(256))));
    }

    /// Scalars, pointers, arrays and structs (strings inside redacted too).
    #[test]
    fn composite_values() {
        let i32t = t("int32", 4, KeyKind::Int);
        let kt = t(
            "main.K",
            48,
            KeyKind::Struct(vec![
                KeyField {
                    name: "A".into(),
                    offset: 0,
                    ty: i32t.clone(),
                },
                KeyField {
                    name: "S".into(),
                    offset: 8,
                    ty: t("string", 16, KeyKind::String),
                },
                KeyField {
                    name: "P".into(),
                    offset: 24,
                    ty: t("*main.T", 8, KeyKind::Pointer),
                },
                KeyField {
                    name: "V".into(),
                    offset: 32,
                    ty: t(
                        "[3]uint16",
                        6,
                        KeyKind::Array {
                            elem: Box::new(t("uint16", 2, KeyKind::Uint)),
                            len: 3,
                        },
                    ),
                },
                KeyField {
                    name: "B".into(),
                    offset: 38,
                    ty: t("bool", 1, KeyKind::Bool),
                },
                KeyField {
                    name: "F".into(),
                    offset: 40,
                    ty: t("float64", 8, KeyKind::Float),
                },
            ]),
        );
        let mut raw = vec![0u8; 48];
        raw[0..4].copy_from_slice(&(-7i32).to_le_bytes());
        raw[8..24].copy_from_slice(&str_hdr(9));
        raw[24..32].copy_from_slice(&0xc000_0042u64.to_le_bytes());
        for (i, v) in [1u16, 2, 65535].iter().enumerate() {
            raw[32 + 2 * i..34 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        raw[38] = 1;
        raw[40..48].copy_from_slice(&(-1.5f64).to_le_bytes());
        let k = key(&raw, vec![sv(b"secret-99")]);
        assert_eq!(
            render(&k, &kt, true),
            "{A: -7, S: \"secret-99\", P: 0xc0000042 (*main.T), V: [1, 2, 65535], B: true, F: -1.5}"
        );
        let red = render(&k, &kt, false);
        assert!(red.starts_with("{A: -7, S: \"secr…\" (len 9, #"), "{red}");
        assert!(!red.contains("secret-99"));
        // Fields past the bytes kept are elided, not misread.
        let k = key(&raw[..30], vec![sv(b"secret-99")]);
        assert!(render(&k, &kt, true).contains("P: …, V: […, …, …], B: …"));
        // Nil pointer, unknown kinds as hex.
        let pk = key(&[0u8; 8], vec![]);
        assert_eq!(
            render(&pk, &t("*main.T", 8, KeyKind::Pointer), false),
            "nil (*main.T)"
        );
        let ok = key(&[0xab, 0xcd], vec![]);
        assert_eq!(
            render(&ok, &t("x", 2, KeyKind::Other(0)), false),
            "0xabcd (x)"
        );
        let ik = key(&[0xff; 8], vec![]);
        assert_eq!(render(&ik, &t("int64", 8, KeyKind::Int), false), "-1");
        assert_eq!(
            render(&ik, &t("uint64", 8, KeyKind::Uint), false),
            u64::MAX.to_string()
        );
    }

    /// A string after an elided array of strings still gets its own content.
    #[test]
    fn string_leaves_stay_aligned() {
        let st = t("string", 16, KeyKind::String);
        let arr = t(
            "[20]string",
            320,
            KeyKind::Array {
                elem: Box::new(st.clone()),
                len: 20,
            },
        );
        let kt = t(
            "K",
            336,
            KeyKind::Struct(vec![
                KeyField {
                    name: "A".into(),
                    offset: 0,
                    ty: arr,
                },
                KeyField {
                    name: "Z".into(),
                    offset: 320,
                    ty: st,
                },
            ]),
        );
        let strs: Vec<StrVal> = (0..21).map(|i| sv(format!("s{i}").as_bytes())).collect();
        let k = key(&[0u8; 64], strs);
        let r = render(&k, &kt, true);
        assert!(r.contains("\"s15\", … (4 more)], Z: \"s20\"}"), "{r}");
    }
}
