//! Statistics over repetitions, and how figures are written in the report.

use serde::{Deserialize as _, Deserializer};

/// A figure read back from a record: JSON has no NaN (serde_json writes a
/// non-finite figure as null), so null is read back as NaN. For
/// `#[serde(deserialize_with = ...)]`.
pub(super) fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The median of the finite values (NaN when there is none).
pub(super) fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The least and greatest values (infinities for none).
pub(super) fn min_max(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// A share as a signed percentage with one decimal (`+1.2 %`).
pub(super) fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:+.1} %", x * 100.0)
    } else {
        "n/a".to_owned()
    }
}

/// A whole number with thousands separators (`12,345`).
pub(super) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_owned();
    }
    let s = format!("{:.0}", x.round());
    let neg = s.starts_with('-');
    let digits = s.trim_start_matches('-');
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if neg { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_skips_nan() {
        assert!((median(&[3.0, f64::NAN, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(&[4.0, 1.0]) - 2.5).abs() < 1e-12);
        assert!(median(&[f64::NAN]).is_nan());
    }

    #[test]
    fn figures() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(-1234.0), "-1,234");
        assert_eq!(num(f64::NAN), "n/a");
        assert_eq!(pct(0.0123), "+1.2 %");
        assert_eq!(pct(f64::INFINITY), "n/a");
    }
}
