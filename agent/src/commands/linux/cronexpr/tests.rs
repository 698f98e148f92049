use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn next(expr: &str, after: &str) -> Option<String> {
    Schedule::parse(expr)
        .unwrap()
        .next_after(ts(after), &TimeZone::UTC)
        .map(|t| t.to_string())
}

#[test]
fn next_runs_of_common_expressions() {
    let now = "2024-02-27T10:30:15Z";
    assert_eq!(
        next("* * * * *", now).as_deref(),
        Some("2024-02-27T10:31:00Z")
    );
    assert_eq!(
        next("30 10 * * *", now).as_deref(),
        Some("2024-02-28T10:30:00Z")
    );
    assert_eq!(
        next("*/15 * * * *", now).as_deref(),
        Some("2024-02-27T10:45:00Z")
    );
    assert_eq!(
        next("17 * * * *", now).as_deref(),
        Some("2024-02-27T11:17:00Z")
    );
    assert_eq!(
        next("0 0 29 2 *", now).as_deref(),
        Some("2024-02-29T00:00:00Z")
    );
    assert_eq!(
        next("0 0 29 feb *", "2024-03-01T00:00:00Z").as_deref(),
        Some("2028-02-29T00:00:00Z")
    );
    assert_eq!(next("0 0 30 2 *", now), None);
    assert_eq!(next("@daily", now).as_deref(), Some("2024-02-28T00:00:00Z"));
    assert_eq!(
        next("@hourly", now).as_deref(),
        Some("2024-02-27T11:00:00Z")
    );
    assert_eq!(
        next("@monthly", now).as_deref(),
        Some("2024-03-01T00:00:00Z")
    );
    assert_eq!(
        next("@yearly", now).as_deref(),
        Some("2025-01-01T00:00:00Z")
    );
    // 2024-02-27 is a Tuesday; @weekly is Sunday midnight.
    assert_eq!(
        next("@weekly", now).as_deref(),
        Some("2024-03-03T00:00:00Z")
    );
    assert_eq!(
        next("0 9 * * mon-fri", "2024-03-01T09:00:00Z").as_deref(),
        Some("2024-03-04T09:00:00Z")
    );
    assert_eq!(
        next("0 9 * * 7", now).as_deref(),
        Some("2024-03-03T09:00:00Z")
    );
    assert_eq!(
        next("0 9 * * SUN", now).as_deref(),
        Some("2024-03-03T09:00:00Z")
    );
    assert_eq!(
        next("5 4 * JAN-mar,dec 0", now).as_deref(),
        Some("2024-03-03T04:05:00Z")
    );
    // Both day fields restricted: either may match (the 1st, or a Friday).
    assert_eq!(
        next("0 0 1 * fri", now).as_deref(),
        Some("2024-03-01T00:00:00Z")
    );
    assert_eq!(
        next("0 0 15 * fri", now).as_deref(),
        Some("2024-03-01T00:00:00Z")
    );
    // A day field starting with '*' makes both necessary: odd days that are Mondays.
    assert_eq!(
        next("0 0 */2 * mon", now).as_deref(),
        Some("2024-03-11T00:00:00Z")
    );
    assert_eq!(
        next("10/20 * * * *", now).as_deref(),
        Some("2024-02-27T10:50:00Z")
    );
    assert_eq!(
        next("0 22-23/1,1 * * *", now).as_deref(),
        Some("2024-02-27T22:00:00Z")
    );
    // Exactly on a matching minute: the next one, not this one.
    assert_eq!(
        next("30 10 * * *", "2024-02-27T10:30:00Z").as_deref(),
        Some("2024-02-28T10:30:00Z")
    );
    assert_eq!(
        next("*/4294967295 * * * *", now).as_deref(),
        Some("2024-02-27T11:00:00Z")
    );
    assert_eq!(Schedule::parse("@reboot").unwrap(), Schedule::Reboot);
    assert_eq!(next("@reboot", now), None);
}

#[test]
fn malformed_expressions_are_refused_with_a_reason() {
    for (expr, says) in [
        ("* * * *", "5 fields"),
        ("60 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 0 * *", "out of range"),
        ("* * * 13 *", "out of range"),
        ("* * * * 8", "out of range"),
        ("*/0 * * * *", "step of 0"),
        ("5-1 * * * *", "backwards"),
        ("a * * * *", "not a number"),
        ("1,,2 * * * *", "empty"),
        ("* * * * mon-", "empty"),
        ("@sometimes", "unknown schedule macro"),
        ("L * * * *", "not a number"),
        ("*/99999999999 * * * *", "bad step"),
    ] {
        let e = Schedule::parse(expr).unwrap_err();
        assert!(e.contains(says), "{expr}: {e}");
    }
}

#[test]
fn daylight_saving_changes_follow_the_wall_clock() {
    let berlin = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
    let at = |expr: &str, after: &str| {
        Schedule::parse(expr)
            .unwrap()
            .next_after(ts(after), &berlin)
            .map(|t| t.to_string())
    };
    // 2024-03-31 02:00 local does not exist: the 02:30 job runs the next day.
    assert_eq!(
        at("30 2 * * *", "2024-03-30T23:00:00Z").as_deref(),
        Some("2024-04-01T00:30:00Z")
    );
    // 2024-10-27 02:30 local happens twice (00:30Z and 01:30Z): the first after "now" is chosen.
    assert_eq!(
        at("30 2 * * *", "2024-10-26T23:00:00Z").as_deref(),
        Some("2024-10-27T00:30:00Z")
    );
    assert_eq!(
        at("30 2 * * *", "2024-10-27T00:45:00Z").as_deref(),
        Some("2024-10-27T01:30:00Z")
    );
    assert_eq!(
        at("30 2 * * *", "2024-10-27T01:45:00Z").as_deref(),
        Some("2024-10-28T01:30:00Z")
    );
    // Winter time: 09:00 local is 08:00Z.
    assert_eq!(
        at("0 9 * * *", "2024-12-01T12:00:00Z").as_deref(),
        Some("2024-12-02T08:00:00Z")
    );
}

// ---- Property test: the computed next run against a minute-by-minute search. ----

/// One comma item of a generated field; the oracle expands it independently of the parser.
#[derive(Debug, Clone)]
enum Item {
    Value(u32),
    Range(u32, u32),
    Step { lo: u32, hi: u32, step: u32 },
    FromStep { lo: u32, step: u32 },
}

#[derive(Debug, Clone)]
enum Field {
    Star,
    StarStep(u32),
    List(Vec<Item>),
}

impl Field {
    fn render(&self, names: &[&str], name_base: u32, use_names: bool) -> String {
        let v = |n: u32| {
            if use_names
                && !names.is_empty()
                && n >= name_base
                && ((n - name_base) as usize) < names.len()
            {
                names[(n - name_base) as usize].to_uppercase()
            } else {
                n.to_string()
            }
        };
        match self {
            Field::Star => "*".into(),
            Field::StarStep(s) => format!("*/{s}"),
            Field::List(items) => items
                .iter()
                .map(|i| match i {
                    Item::Value(n) => v(*n),
                    Item::Range(a, b) => format!("{}-{}", v(*a), v(*b)),
                    Item::Step { lo, hi, step } => format!("{}-{}/{step}", v(*lo), v(*hi)),
                    Item::FromStep { lo, step } => format!("{lo}/{step}"),
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The set the field denotes, over `min..=max`.
    fn values(&self, min: u32, max: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut add_stepped = |lo: u32, hi: u32, step: u32| {
            let mut n = lo;
            while n <= hi {
                out.push(n);
                n += step;
            }
        };
        match self {
            Field::Star => add_stepped(min, max, 1),
            Field::StarStep(s) => add_stepped(min, max, *s),
            Field::List(items) => {
                for i in items {
                    match *i {
                        Item::Value(n) => add_stepped(n, n, 1),
                        Item::Range(a, b) => add_stepped(a, b, 1),
                        Item::Step { lo, hi, step } => add_stepped(lo, hi, step),
                        Item::FromStep { lo, step } => add_stepped(lo, max, step),
                    }
                }
            }
        }
        out
    }

    fn is_star(&self) -> bool {
        matches!(self, Field::Star | Field::StarStep(_))
    }
}

fn field(min: u32, max: u32, star_weight: u32) -> impl Strategy<Value = Field> {
    let item = prop_oneof![
        (min..=max).prop_map(Item::Value),
        (min..=max, min..=max).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        (min..=max, min..=max, 1..=(max - min + 1)).prop_map(|(a, b, step)| Item::Step {
            lo: a.min(b),
            hi: a.max(b),
            step
        }),
        (min..=max, 1..=(max - min + 1)).prop_map(|(lo, step)| Item::FromStep { lo, step }),
    ];
    prop_oneof![
        star_weight => Just(Field::Star),
        1 => (1..=(max - min + 1)).prop_map(Field::StarStep),
        3 => proptest::collection::vec(item, 1..4).prop_map(Field::List),
    ]
}

#[derive(Debug, Clone)]
struct Expr {
    minute: Field,
    hour: Field,
    day: Field,
    month: Field,
    weekday: Field,
    names: bool,
}

impl Expr {
    fn render(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.minute.render(&[], 0, false),
            self.hour.render(&[], 0, false),
            self.day.render(&[], 1, false),
            self.month.render(MONTH_NAMES, 1, self.names),
            self.weekday.render(DAY_NAMES, 0, self.names),
        )
    }

    /// The oracle: cron's matching rule, written from the generated structure.
    fn matches(&self, dt: jiff::civil::DateTime) -> bool {
        let has = |f: &Field, min, max, v: i8| f.values(min, max).contains(&(v as u32));
        let weekdays: Vec<u32> = self
            .weekday
            .values(0, 7)
            .into_iter()
            .map(|d| d % 7)
            .collect();
        let day = has(&self.day, 1, 31, dt.day());
        let weekday = weekdays.contains(&(dt.weekday().to_sunday_zero_offset() as u32));
        let day_ok = if self.day.is_star() || self.weekday.is_star() {
            day && weekday
        } else {
            day || weekday
        };
        day_ok
            && has(&self.month, 1, 12, dt.month())
            && has(&self.hour, 0, 23, dt.hour())
            && has(&self.minute, 0, 59, dt.minute())
    }
}

fn expr() -> impl Strategy<Value = Expr> {
    (
        field(0, 59, 2),
        field(0, 23, 2),
        field(1, 31, 6),
        field(1, 12, 10),
        field(0, 7, 6),
        any::<bool>(),
    )
        .prop_map(|(minute, hour, day, month, weekday, names)| Expr {
            minute,
            hour,
            day,
            month,
            weekday,
            names,
        })
}

/// Random instants in 2020-2040; with `near_change`, moved to within hours before the zone's next
/// offset change, where a wrong skip over the change would show.
fn now(tz: &TimeZone, secs: i64, nanos: i32, near_change: bool, before: i64) -> Timestamp {
    let t = Timestamp::new(secs, nanos).unwrap();
    if !near_change {
        return t;
    }
    match tz.following(t).next() {
        Some(change) => change.timestamp() - SignedDuration::from_secs(before),
        None => t,
    }
}

fn zone() -> impl Strategy<Value = TimeZone> {
    prop_oneof![
        Just(TimeZone::UTC),
        Just(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()),
        Just(TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap()),
        // Half-hour DST (Lord Howe).
        Just(TimeZone::posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0").unwrap()),
        Just(TimeZone::fixed(jiff::tz::offset(-9))),
    ]
}

const WINDOW_MINUTES: i64 = 8 * 24 * 60;

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn next_run_is_the_earliest_matching_minute(
        e in expr(),
        tz in zone(),
        secs in 1_577_836_800i64..2_208_988_800i64,
        nanos in 0i32..1_000_000_000,
        near_change in proptest::bool::weighted(0.4),
        before in prop_oneof![0i64..180, 0i64..4 * 3600, 0i64..2 * 86_400],
    ) {
        let now = now(&tz, secs, nanos, near_change, before);
        let text = e.render();
        let computed = Schedule::parse(&text)
            .unwrap_or_else(|err| panic!("'{text}' should parse: {err}"))
            .next_after(now, &tz);
        // Every whole minute after `now` for 8 days, in order.
        let first_minute = Timestamp::from_second(now.as_second().div_euclid(60) * 60 + 60).unwrap();
        let brute = (0..WINDOW_MINUTES)
            .map(|k| first_minute + SignedDuration::from_mins(k))
            .find(|t| e.matches(tz.to_datetime(*t)));
        let horizon = first_minute + SignedDuration::from_mins(WINDOW_MINUTES);
        match brute {
            Some(expected) => prop_assert_eq!(computed, Some(expected), "'{}' after {}", text, now),
            None => prop_assert!(
                computed.is_none_or(|c| c >= horizon),
                "'{}' after {}: computed {:?} but nothing matches in the window", text, now, computed
            ),
        }
        if let Some(c) = computed {
            prop_assert!(c > now);
            prop_assert!(e.matches(tz.to_datetime(c)), "'{}': {} does not match", text, c);
        }
    }
}

#[test]
fn the_oracle_agrees_on_a_known_case() {
    // Guards the property test against an oracle that matches nothing.
    let e = Expr {
        minute: Field::List(vec![Item::Value(5)]),
        hour: Field::Star,
        day: Field::Star,
        month: Field::Star,
        weekday: Field::Star,
        names: false,
    };
    assert!(e.matches(date(2024, 1, 1).at(3, 5, 0, 0)));
    assert!(!e.matches(date(2024, 1, 1).at(3, 6, 0, 0)));
}
