//! Property tests of every parser of outside input in the domain: arbitrary text never
//! panics, and what is rendered parses back to the same value.

use ledgerhook_domain::duration::{format_duration, parse_byte_size, parse_duration};
use ledgerhook_domain::faults::Faults;
use ledgerhook_domain::rate::Rate;
use ledgerhook_domain::time::{parse_lenient, Timestamp};
use ledgerhook_domain::{query, Operation};
use proptest::prelude::*;
use std::time::Duration;

/// Text that looks like the inputs: digits, units, separators, quotes, keywords.
fn input_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9.:+TZ -]{0,32}",
        "[0-9]{0,6}(ms|s|m|h|d|KiB|MiB|B)?",
        "(select|SELECT) [*a-zA-Z(),]{0,12} (from|FROM) [A-Za-z]{0,12}( where [A-Za-z.]{1,10} (=|<|>|in|like) '[^']{0,6}'?)?( orderby [A-Za-z]{1,8})?( startposition [0-9]{0,4})?",
    ]
}

proptest! {
    #[test]
    fn parsers_never_panic(text in input_like()) {
        let _ = parse_duration(&text);
        let _ = parse_byte_size(&text);
        let _ = Timestamp::parse(&text);
        let _ = parse_lenient(&text);
        let _ = query::parse(&text);
        let _ = Rate::parse(&text);
        let _ = Faults::from_storage(&text);
        let _ = Operation::parse(&text);
    }

    #[test]
    fn durations_round_trip(millis in 0u64..10_000_000_000) {
        let duration = Duration::from_millis(millis);
        let text = format_duration(duration);
        prop_assert_eq!(parse_duration(&text).unwrap(), duration, "{}", text);
    }

    #[test]
    fn timestamps_round_trip(millis in 0i64..4_102_444_800_000) {
        let at = Timestamp(millis);
        let text = at.to_rfc3339();
        prop_assert_eq!(Timestamp::parse(&text).unwrap(), at);
        prop_assert_eq!(parse_lenient(&text).unwrap(), at);
    }

    #[test]
    fn a_quoted_id_in_a_query_is_read_back(id in "[^'\\\\]{0,20}") {
        let text = format!("select * from Customer where Id = '{id}'");
        prop_assert!(query::parse(&text).is_ok(), "{}", text);
    }

    #[test]
    fn fault_settings_round_trip(drop in 0.0f64..=1.0, duplicate in 0.0f64..=1.0, delay in 0.0f64..=1.0, millis in 0u64..86_400_000, seed in any::<u64>()) {
        let faults = Faults { drop, duplicate, delay, delay_by: Duration::from_millis(millis), seed };
        prop_assert!(faults.validate().is_ok());
        prop_assert_eq!(Faults::from_storage(&faults.to_storage()).unwrap(), faults);
    }
}
