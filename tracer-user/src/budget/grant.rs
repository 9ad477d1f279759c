//! The governed probes' grant in the kernel: how many full runs their
//! programs may still make before the governor's next check
//! ([`tracer_common::ProbeSpec::grant`]).
//!
//! The governor checks the governed probes every 20 ms while they are
//! attached; a busy service creates and grows thousands of maps in that
//! time, each a stack walk and an event at 12-14 µs of the target's CPU.
//! Without a grant, the probes ran in full until the check that found the
//! credit gone, and a burst overshot the bucket by a check period's cost.
//! With it, their programs return at once when the credit above the close
//! reserve is spent, and each call until the pause costs the trap alone.

use super::{Budget, ProbeClass, add_runs, counts_since};

impl Budget {
    /// Writes the governed probes' grant: the runs a share of the credit
    /// above their close reserve pays for ([`runs`]).
    pub(super) fn write_grant(&self) {
        let (Some(sw), Some(slot)) = (&self.switch, self.grant_slot) else {
            return;
        };
        let price = price(
            self.probes
                .iter()
                .zip(&self.last_site_rate)
                .filter(|(p, _)| p.class == ProbeClass::Governed)
                .map(|(p, &rate)| (rate, p.hit_cost)),
        );
        let spare = self.gov.credit - self.gov.reserve.creation;
        let runs = runs(spare, price, self.gov.limitless());
        if crate::app::debug_credit() {
            eprintln!(
                "grant {:.1} ms runs {runs} price {:.2} us spare {spare:.5}",
                crate::app::now_ns() as f64 / 1e6,
                price * 1e6
            );
        }
        sw.grant(slot, runs);
    }

    /// Takes the runs per probe id that found the governed probes' grant
    /// spent (`denied`, [`crate::bpf::HitsReader::denied`]): debited at the
    /// trap's price at the next check.
    pub fn denied_since(&mut self, denied: &[u64]) {
        for (i, d) in counts_since(&self.probes, &mut self.last_denied, denied) {
            self.denied_total += d;
            self.denied_pending[i] += d;
            add_runs(&mut self.returned_by_program, self.probes[i].program, d);
        }
    }
}

/// Share of the spare credit a grant pays out in full runs. Between two
/// checks the runs are not all that is debited: the calls past the grant
/// (at the trap's price, until the next check pauses the probes) and the
/// tracer's own work on the runs' events land in the same check. On
/// creators (Go 1.26) a grant of the whole spare credit, 3,865 runs, was
/// spent within one 11 ms check, with 3,198 calls past it (2.6 ms) and
/// 3.4 ms of the tracer's CPU on top: 6 ms past the credit, a quarter of
/// the bucket. The rest of the spare is held for them; each check grants
/// again from what is left.
pub const GRANT_SHARE: f64 = 0.5;

/// Full runs [`GRANT_SHARE`] of the credit above the reserve pays for at
/// `price` seconds a run: `spare` seconds of credit (the credit minus the
/// governed probes' close reserve). `u64::MAX` when the limit is lifted
/// (or nothing is priced yet), 0 when nothing is left.
#[must_use]
pub fn runs(spare: f64, price: f64, limitless: bool) -> u64 {
    if limitless || price.is_nan() || price <= 0.0 {
        return u64::MAX;
    }
    if spare.is_nan() || spare <= 0.0 {
        return 0;
    }
    // `as` saturates: a huge quotient is u64::MAX.
    (GRANT_SHARE * spare / price) as u64
}

/// The price of one governed run (seconds of target CPU): the mean over the
/// last check, weighted by each probe's calls (`rates`: each probe's cost
/// rate and its price per hit), or, before any call was seen, the dearest
/// probe's price (a grant then errs short, and the next check grants
/// again).
#[must_use]
pub fn price(probes: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (mut cost, mut calls, mut dearest) = (0.0f64, 0.0f64, 0.0f64);
    for (rate, hit_cost) in probes {
        dearest = dearest.max(hit_cost);
        if hit_cost > 0.0 && rate > 0.0 {
            cost += rate;
            calls += rate / hit_cost;
        }
    }
    if calls > 0.0 { cost / calls } else { dearest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_credit_buys_runs_at_the_price() {
        // Half of 10 ms at 12 µs a run.
        assert_eq!(runs(0.010, 12e-6, false), 416);
        assert_eq!(runs(0.0, 12e-6, false), 0);
        assert_eq!(runs(-0.004, 12e-6, false), 0);
        assert_eq!(runs(f64::NAN, 12e-6, false), 0);
        assert_eq!(runs(0.010, 12e-6, true), u64::MAX);
        assert_eq!(runs(0.010, 0.0, false), u64::MAX);
        assert_eq!(runs(1e30, 1e-12, false), u64::MAX);
    }

    #[test]
    fn the_price_is_weighted_by_calls() {
        // 1,000 calls a second at 10 µs and 3,000 at 2 µs: 4 µs a call.
        let p = price([(1_000.0 * 10e-6, 10e-6), (3_000.0 * 2e-6, 2e-6)]);
        assert!((p - 4e-6).abs() < 1e-12, "{p}");
        // No calls yet: the dearest.
        assert_eq!(price([(0.0, 10e-6), (0.0, 2e-6)]), 10e-6);
        assert_eq!(price([]), 0.0);
    }
}
