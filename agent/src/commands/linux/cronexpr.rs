//! Cron schedule expressions (`m h dom mon dow` and `@daily`-style macros) and their next run.
//!
//! The syntax is Vixie cron's, as Debian's cron and cronie read it: `*`, numbers, names (`jan`,
//! `mon`, any case), ranges `a-b`, steps `*/s`, `a-b/s` and `a/s` (from `a` to the field's end),
//! comma lists of all of these; day of week 0-7 where 0 and 7 are Sunday. Day of month and day of
//! week combine as cron combines them: when either field starts with `*` a day must match both,
//! otherwise it may match either (`0 0 1 * mon` runs on the 1st and on every Monday).
//!
//! The next run is the first whole minute strictly after "now" whose wall-clock time in the given
//! time zone matches. Across a DST change that means: minutes skipped by the change do not run,
//! minutes lived twice run at their first occurrence after "now". (cron daemons add their own
//! catch-up rules around such changes; those are not modelled.) An expression that cannot match
//! within [`SEARCH_YEARS`] years (`0 0 30 2 *`) has no next run.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// How far ahead a next run is searched: far enough for every February 29.
pub const SEARCH_YEARS: i16 = 8;

/// The most spans of constant UTC offset one search goes through.
const MAX_OFFSET_SPANS: usize = 1_000;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `@reboot`: at daemon start, no next run in time.
    Reboot,
    Times(Fields),
}

/// The matching values of the five fields, as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday 0.
    weekdays: u8,
    day_star: bool,
    weekday_star: bool,
}

const MONTH_NAMES: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for min, min+1, ...
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: MONTH_NAMES,
};
// 7 is Sunday too; folded onto 0 after parsing.
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day of week",
    min: 0,
    max: 7,
    names: DAY_NAMES,
};

/// The expansion of a macro (`@daily`), `None` for an unknown one; `@reboot` is not a time.
pub fn macro_expansion(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

impl Schedule {
    /// Parses a macro (`@daily`, `@reboot`) or five whitespace-separated fields.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let expr = expr.trim();
        if expr.starts_with('@') {
            if expr.eq_ignore_ascii_case("@reboot") {
                return Ok(Self::Reboot);
            }
            let Some(expansion) = macro_expansion(expr) else {
                return Err(format!("unknown schedule macro '{expr}'"));
            };
            return Fields::parse(expansion).map(Self::Times);
        }
        Fields::parse(expr).map(Self::Times)
    }

    /// The first matching minute strictly after `after`, in `tz`; `None` for `@reboot` or when
    /// nothing matches within [`SEARCH_YEARS`].
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Self::Reboot => None,
            Self::Times(f) => f.next_after(after, tz),
        }
    }
}

impl Fields {
    /// Parses `m h dom mon dow`.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts[..] else {
            return Err(format!(
                "a schedule has 5 fields (minute hour day-of-month month day-of-week), '{expr}' has {}",
                parts.len()
            ));
        };
        let weekdays = parse_field(dow, &WEEKDAY)?;
        // Sunday may be written 0 or 7.
        let weekdays = ((weekdays | (weekdays >> 7)) & 0x7f) as u8;
        Ok(Self {
            minutes: parse_field(m, &MINUTE)?,
            hours: parse_field(h, &HOUR)? as u32,
            days: parse_field(dom, &DAY)? as u32,
            months: parse_field(mon, &MONTH)? as u16,
            weekdays,
            day_star: dom.starts_with('*'),
            weekday_star: dow.starts_with('*'),
        })
    }

    fn date_matches(&self, d: Date) -> bool {
        if !bit(u64::from(self.months), d.month()) {
            return false;
        }
        let day = bit(u64::from(self.days), d.day());
        let weekday = bit(
            u64::from(self.weekdays),
            d.weekday().to_sunday_zero_offset(),
        );
        if self.day_star || self.weekday_star {
            day && weekday
        } else {
            day || weekday
        }
    }

    /// See [`Schedule::next_after`].
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let limit = tz
            .to_datetime(after)
            .date()
            .checked_add(jiff::Span::new().years(SEARCH_YEARS))
            .ok()?;
        // The search goes through spans of constant UTC offset; within one, wall-clock time moves
        // with real time, so the first matching wall-clock minute is the first matching instant.
        let mut from = after.checked_add(SignedDuration::from_nanos(1)).ok()?;
        // Real zones change offset a few times a year; the bound only guards against odd zone data.
        for _ in 0..MAX_OFFSET_SPANS {
            let offset = tz.to_offset(from);
            // A transition that does not move forward (jiff reports one at its minimum timestamp
            // for a TZif file without transitions) means there is none.
            let span_end = tz
                .following(from)
                .next()
                .map(|t| t.timestamp())
                .filter(|t| *t > from);
            let start = ceil_minute(offset.to_datetime(from))?;
            if start.date() > limit {
                return None;
            }
            let end = span_end.map(|t| offset.to_datetime(t));
            if let Some(dt) = self.next_wall_clock(start, end, limit) {
                return offset.to_timestamp(dt).ok();
            }
            from = span_end?;
        }
        None
    }

    /// The first matching minute at or after `start` and before `end` (exclusive), not later than
    /// the day `limit`.
    fn next_wall_clock(
        &self,
        start: DateTime,
        end: Option<DateTime>,
        limit: Date,
    ) -> Option<DateTime> {
        let last_day = end.map_or(limit, |e| e.date().min(limit));
        let mut date = start.date();
        let mut first = true;
        while date <= last_day {
            if !bit(u64::from(self.months), date.month()) {
                // Skip the rest of the month.
                date = date.last_of_month().tomorrow().ok()?;
                first = false;
                continue;
            }
            if self.date_matches(date) {
                let (h0, m0) = if first {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for h in h0..24 {
                    if !bit(u64::from(self.hours), h) {
                        continue;
                    }
                    let from_minute = if h == h0 { m0 } else { 0 };
                    let Some(m) = first_bit_from(self.minutes, from_minute) else {
                        continue;
                    };
                    let dt = date.at(h, m, 0, 0);
                    return match end {
                        Some(e) if dt >= e => None,
                        _ => Some(dt),
                    };
                }
            }
            date = date.tomorrow().ok()?;
            first = false;
        }
        None
    }
}

/// The wall-clock minute at or after `dt`.
fn ceil_minute(dt: DateTime) -> Option<DateTime> {
    let floor = dt.date().at(dt.hour(), dt.minute(), 0, 0);
    if floor == dt {
        Some(floor)
    } else {
        floor.checked_add(SignedDuration::from_mins(1)).ok()
    }
}

fn bit(set: u64, n: i8) -> bool {
    (0..64).contains(&n) && set & (1 << n) != 0
}

fn first_bit_from(set: u64, from: i8) -> Option<i8> {
    let from = u32::try_from(from).ok()?;
    let rest = set.checked_shr(from)?;
    (rest != 0).then(|| (from + rest.trailing_zeros()) as i8)
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut set = 0u64;
    for item in text.split(',') {
        set |= parse_item(item, spec).map_err(|e| format!("{} '{text}': {e}", spec.name))?;
    }
    Ok(set)
}

fn parse_item(item: &str, spec: &FieldSpec) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().map_err(|_| format!("bad step '{s}'"))?;
            if step == 0 {
                return Err("a step of 0 never advances".into());
            }
            (r, Some(step))
        }
        None => (item, None),
    };
    let (lo, hi) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let (a, b) = (value(a, spec)?, value(b, spec)?);
        if a > b {
            return Err(format!("range '{range}' runs backwards"));
        }
        (a, b)
    } else {
        let v = value(range, spec)?;
        // `a/s` runs from a to the end of the field, as cronie reads it.
        (v, if step.is_some() { spec.max } else { v })
    };
    let step = step.unwrap_or(1);
    let mut set = 0u64;
    let mut v = lo;
    while v <= hi {
        set |= 1 << v;
        // A step as large as u32 allows ends the field instead of overflowing.
        let Some(next) = v.checked_add(step) else {
            break;
        };
        v = next;
    }
    Ok(set)
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(spec.min + i as u32);
    }
    match text.parse::<u32>() {
        Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is out of range {}-{}", spec.min, spec.max)),
        Err(_) if text.is_empty() => Err("empty value".into()),
        Err(_) => Err(format!("'{text}' is not a number or name")),
    }
}

#[cfg(test)]
mod tests;
