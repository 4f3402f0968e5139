use super::*;

fn t(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
}

fn src(s: &str) -> Source {
    Source::of(s.parse().unwrap())
}

/// A canonical code that is not `code`.
fn wrong(code: &str) -> &'static str {
    if code.starts_with('2') {
        "33333333"
    } else {
        "22222222"
    }
}

#[test]
fn codes_use_the_alphabet_and_format() {
    let code = generate_code(&rng()).unwrap();
    assert_eq!(code.len(), 8);
    assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
    let shown = format_code(&code);
    assert_eq!(shown.len(), 9);
    assert_eq!(&shown[4..5], "-");
    assert_eq!(
        normalize_code(&shown.to_lowercase()).unwrap().as_str(),
        code.as_str()
    );
}

#[test]
fn normalization_rejects_bad_input() {
    for bad in [
        "",
        "ABCD-EFG",
        "ABCD-EFGHJ",
        "ABCD-EF0H",
        "ABCD-EFIH",
        "ABCD_EFGH",
        "ÄBCD-EFGH",
        &"A".repeat(40),
    ] {
        assert!(normalize_code(bad).is_none(), "{bad:?}");
    }
    assert_eq!(normalize_code("abcd efgh").unwrap().as_str(), "ABCDEFGH");
}

#[test]
fn single_use_expiring_and_replaced() {
    let s = src("198.51.100.7");
    let mut p = Pairing::default();
    assert_eq!(
        p.check(s, "ABCDEFGH", t(0)).unwrap_err().0,
        CodeError::NoPending
    );
    let (first, exp) = p.mint(&rng(), t(0)).unwrap();
    assert_eq!(exp, t(300));
    let (second, _) = p.mint(&rng(), t(1)).unwrap();
    if first.as_str() != second.as_str() {
        assert_eq!(p.check(s, &first, t(2)).unwrap_err().0, CodeError::Wrong);
    }
    assert_eq!(p.check(s, &second, t(2)), Ok(()));
    p.consume(s);
    assert_eq!(
        p.check(s, &second, t(3)).unwrap_err().0,
        CodeError::NoPending
    );
    let (third, _) = p.mint(&rng(), t(10)).unwrap();
    assert_eq!(
        p.check(s, &third, t(310)).unwrap_err().0,
        CodeError::NoPending
    );
}

#[test]
fn sources_are_addresses_or_ipv6_slash_64() {
    assert_eq!(src("203.0.113.1"), src("::ffff:203.0.113.1"));
    assert_eq!(src("2001:db8:1:2::1"), src("2001:db8:1:2:ffff::9"));
    assert_ne!(src("2001:db8:1:2::1"), src("2001:db8:1:3::1"));
    assert_eq!(src("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    assert_eq!(src("203.0.113.1").to_string(), "203.0.113.1");
}

#[test]
fn rate_limit_per_source() {
    let ip = src("198.51.100.7");
    let other = src("198.51.100.8");
    let mut p = Pairing::default();
    for i in 0..5 {
        p.admit(ip, t(i)).unwrap();
    }
    let Err(Refusal::Throttled { retry_after }) = p.admit(ip, t(5)) else {
        panic!("expected a throttle");
    };
    assert!((55..=61).contains(&retry_after), "{retry_after}");
    p.admit(other, t(5)).unwrap();
    p.admit(ip, t(61)).unwrap();
}

#[test]
fn a_source_is_locked_out_after_its_failures_and_only_that_source() {
    let ip = src("203.0.113.1");
    let mut p = Pairing::default();
    let (code, _) = p.mint(&rng(), t(0)).unwrap();
    for i in 0..LOCKOUT_FAILURES as u64 {
        p.admit(ip, t(i * 20)).unwrap();
        let (err, effect) = p.check(ip, wrong(&code), t(i * 20)).unwrap_err();
        assert_eq!(err, CodeError::Wrong);
        assert_eq!(effect.locked_out, i + 1 == LOCKOUT_FAILURES as u64);
    }
    let Err(Refusal::LockedOut { retry_after }) = p.admit(ip, t(100)) else {
        panic!("expected a lockout");
    };
    assert!(retry_after > 800, "{retry_after}");
    let status = p.status(t(100));
    assert_eq!(
        status.locked_out,
        [LockedOut {
            source: ip,
            until: t(80) + LOCKOUT_DURATION
        }]
    );
    // The code is still pending and another source pairs with it.
    let device = src("198.51.100.20");
    p.admit(device, t(101)).unwrap();
    assert_eq!(p.check(device, &code, t(101)), Ok(()));
    // The lockout ends.
    assert!(p.admit(ip, t(80) + LOCKOUT_DURATION).is_ok());
}

#[test]
fn many_sources_spend_the_budget_but_a_clean_source_still_pairs() {
    let mut p = Pairing::default();
    let (code, expires) = p.mint(&rng(), t(0)).unwrap();
    let budget = CODE_GUESS_BUDGET as usize;
    let sources: Vec<Source> = (0..budget)
        .map(|i| src(&format!("2001:db8:{}:{}::1", i / 256, i % 256)))
        .collect();
    for (i, s) in sources.iter().enumerate() {
        p.admit(*s, t(1)).unwrap();
        let (err, effect) = p.check(*s, wrong(&code), t(1)).unwrap_err();
        assert_eq!(err, CodeError::Wrong);
        assert_eq!(effect.budget_spent, i + 1 == budget, "{i}");
    }
    assert!(p.status(t(2)).budget_spent);
    // A source with a failure may not guess again; the code is not void.
    assert_eq!(
        p.admit(sources[0], t(90)),
        Err(Refusal::BudgetSpent {
            retry_after: secs_until(t(90), expires)
        })
    );
    // A clean source gets one try: a wrong one puts it out too …
    let stranger = src("203.0.113.50");
    p.admit(stranger, t(90)).unwrap();
    assert_eq!(
        p.check(stranger, wrong(&code), t(90)).unwrap_err().0,
        CodeError::Wrong
    );
    assert!(matches!(
        p.admit(stranger, t(91)),
        Err(Refusal::BudgetSpent { .. })
    ));
    // … and two attempts admitted together from a clean source guess only once.
    let racer = src("203.0.113.51");
    p.admit(racer, t(92)).unwrap();
    p.admit(racer, t(92)).unwrap();
    assert_eq!(
        p.check(racer, wrong(&code), t(92)).unwrap_err().0,
        CodeError::Wrong
    );
    assert!(matches!(
        p.check(racer, &code, t(92)).unwrap_err().0,
        CodeError::Refused(Refusal::BudgetSpent { .. })
    ));
    // The real device, from a clean address, pairs.
    let device = src("198.51.100.20");
    p.admit(device, t(120)).unwrap();
    assert_eq!(p.check(device, &code, t(120)), Ok(()));
}

#[test]
fn the_table_is_bounded_and_guessers_at_a_spent_code_are_never_evicted() {
    let mut p = Pairing::default();
    let (code, _) = p.mint(&rng(), t(0)).unwrap();
    let v6 = |i: usize| src(&format!("2001:db8:{:x}:{:x}::1", i / 65536, i % 65536));
    let mut wrong_guesses = 0u32;
    let mut i = 0;
    // Far more sources than the table holds, each guessing until refused.
    while i < MAX_TRACKED * 2 + CODE_GUESS_BUDGET as usize {
        let s = v6(i);
        i += 1;
        if p.admit(s, t(1)).is_err() {
            continue;
        }
        if let Err((CodeError::Wrong, _)) = p.check(s, wrong(&code), t(1)) {
            wrong_guesses += 1;
        }
        assert!(p.sources.len() <= MAX_TRACKED);
    }
    assert!(
        wrong_guesses as usize <= CODE_GUESS_BUDGET as usize + MAX_TRACKED,
        "{wrong_guesses}"
    );
    // Every source in the table guessed at the spent code: a new one is told to wait.
    assert!(matches!(p.admit(v6(i), t(2)), Err(Refusal::Busy { .. })));
    // A new code starts a new budget, and the table makes room again.
    p.mint(&rng(), t(400)).unwrap();
    assert!(p.admit(v6(i), t(400)).is_ok());
}

#[test]
fn constant_time_eq_works() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
}
