//! Fuzz target: arbitrary bytes as an IRRd whois server's answer to the IRR ownership check,
//! through framing, RPSL parsing and the verdict: no panic, bounded work, and `valid` only
//! with an exact route object carrying our origin and the token
//! (`topoctl::onboard::checks::irr::fuzz_whois_answer`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topoctl::onboard::checks::irr::fuzz_whois_answer(data);
});
