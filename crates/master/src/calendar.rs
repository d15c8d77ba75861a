//! The calendar of timed schedulers: when a `Nightly`-style scheduler fires, in a time zone.
//!
//! Pure logic: no I/O, no clock. Callers pass the instant to search from (the scheduler's injected clock).
//!
//! # Fields
//!
//! A [`Calendar`] is built from Buildbot's `Nightly` fields ([`Calendar::from_fields`]) or from a 5-field cron
//! expression ([`Calendar::from_cron`]). Each field is a list of elements separated by `,`; an element is `*`,
//! a value `5`, a range `9-17`, or any of those with a step (`*/15`, `9-17/2`, `5/20` = `5-59/20`). Months take
//! `1`-`12` or names (`jan`…`dec`, or in full); the day of month takes `L` (the last day of the month).
//!
//! The day of week differs between the two forms:
//! - In fields, numbers are **Buildbot's: Monday = 0 … Sunday = 6**, names are `mon`…`sun` (or in full), ranges
//!   of names may wrap (`fri-mon`) and `mon#1` is the first Monday of the month. A number may only stand alone
//!   in a list (`0,2,4`): Buildbot converts lone numbers from Monday = 0 but hands ranges, steps and `#` to
//!   croniter unconverted (Sunday = 0), so `0-4` or `1#1` would mean different days in Buildbot than they
//!   seem to; Kiln rejects them and asks for names.
//! - In cron expressions, numbers are cron's: Sunday = 0 or 7, Monday = 1; names are the same; `1#1` is the
//!   first Monday.
//!
//! # Day of month *and* day of week
//!
//! As Buildbot (which uses croniter with `day_or=True`) and POSIX cron: when both the day of month and the day
//! of week are restricted, a day matches if **either** matches (`1` and `mon` = the 1st of the month and every
//! Monday). A field counts as unrestricted when it matches every value (`*`, `1-31`, `0-6`, `*/1`), as croniter
//! does; when one of the two is unrestricted, only the other one decides.
//!
//! # Time zones and daylight saving time
//!
//! Fields are wall-clock times in the calendar's time zone (an IANA name, or `UTC`), like cron:
//! - A wall-clock time that does not exist (the gap of a spring-forward day, e.g. 02:30 in Europe/Madrid on the
//!   last Sunday of March) fires at the first valid wall-clock minute after the gap (03:00+02:00). All times in
//!   the gap, and a firing at the end of the gap, collapse into that one firing: an hourly calendar fires 23
//!   times that day, `*/15` fires at 01:45+01:00 then 03:00+02:00.
//! - A wall-clock time that occurs twice (the repeated hour of a fall-back day) fires once, at its first
//!   occurrence: 02:30+02:00, not 02:30+01:00; an hourly calendar fires 24 times in that 25-hour day.

use chrono::{
    DateTime, Datelike, MappedLocalTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeDelta, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

/// How far ahead [`Calendar::next_after`] looks: a whole Gregorian cycle, after which every calendar repeats.
const SEARCH_YEARS: i32 = 401;
/// Bounds the candidates rejected because their wall-clock time was before the start (the repeated hour of a
/// fall-back day is at most a few hours, i.e. a few hundred minutes).
const MAX_REJECTED_CANDIDATES: usize = 10_000;
/// The longest gap of a time-zone transition we step over minute by minute (Samoa skipped a whole day in 2011).
const MAX_GAP_MINUTES: usize = 2 * 24 * 60;

/// Buildbot's `Nightly` fields, as users write them in TOML. Defaults are Buildbot's: minute `0`, every other
/// field `*` (so the default calendar fires every hour on the hour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarFields {
    pub minute: String,
    pub hour: String,
    pub day_of_month: String,
    pub month: String,
    pub day_of_week: String,
}

impl Default for CalendarFields {
    fn default() -> Self {
        CalendarFields {
            minute: "0".to_string(),
            hour: "*".to_string(),
            day_of_month: "*".to_string(),
            month: "*".to_string(),
            day_of_week: "*".to_string(),
        }
    }
}

/// Why a calendar could not be built. Every variant names what was wrong and the text that was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// A field's text is not valid: `day_of_week: 'sunday,xyz': unknown day 'xyz' (…)`.
    #[error("{field}: '{text}': {reason}")]
    Field { field: &'static str, text: String, reason: String },
    /// A cron expression is not 5 fields.
    #[error("cron expression '{expr}': {reason}")]
    Cron { expr: String, reason: String },
    /// The time zone is not an IANA name known to chrono-tz.
    #[error("time zone '{name}': unknown (use an IANA name such as 'Europe/Madrid', or 'UTC')")]
    TimeZone { name: String },
}

/// When a nightly scheduler fires: Buildbot's fields or a cron expression, in a time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    /// Bit n: minute n (0-59).
    minutes: u64,
    /// Bit n: hour n (0-23).
    hours: u32,
    /// Bit n: day of month n (1-31).
    days: u32,
    /// `L` in the day of month.
    last_day: bool,
    /// Bit n: month n (1-12).
    months: u16,
    /// Bit n: weekday n, Monday = 0 (chrono's `num_days_from_monday`).
    weekdays: u8,
    /// `mon#1`: (weekday with Monday = 0, n) = the n-th such weekday of the month.
    nth_weekdays: Vec<(u8, u8)>,
    /// The day of month matches every day (croniter's `*`).
    any_day_of_month: bool,
    /// The day of week matches every day (croniter's `*`).
    any_day_of_week: bool,
    time_zone: Tz,
}

impl Calendar {
    /// Buildbot's fields (see the module documentation for the syntax) in `time_zone` (IANA name or `UTC`).
    pub fn from_fields(fields: &CalendarFields, time_zone: &str) -> Result<Calendar, CalendarError> {
        Calendar::build(
            [&fields.minute, &fields.hour, &fields.day_of_month, &fields.month, &fields.day_of_week],
            Weekdays::Buildbot,
            time_zone,
        )
    }

    /// A 5-field cron expression (`0 3 * * sun`; day of week in cron numbering, Sunday = 0 or 7, names allowed),
    /// or one of `@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`).
    pub fn from_cron(expr: &str, time_zone: &str) -> Result<Calendar, CalendarError> {
        let expanded = match expr.trim().to_ascii_lowercase().as_str() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            _ => expr,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = parts.as_slice() else {
            return Err(CalendarError::Cron {
                expr: expr.to_string(),
                reason: format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                    parts.len()
                ),
            });
        };
        Calendar::build([minute, hour, day_of_month, month, day_of_week], Weekdays::Cron, time_zone)
    }

    fn build(texts: [&str; 5], weekdays: Weekdays, time_zone: &str) -> Result<Calendar, CalendarError> {
        let [minute, hour, day_of_month, month, day_of_week] = texts;
        let time_zone: Tz = time_zone.parse().map_err(|_| CalendarError::TimeZone { name: time_zone.to_string() })?;
        let minutes = parse_field(&MINUTE, minute)?;
        let hours = parse_field(&HOUR, hour)?;
        let days = parse_field(&DAY_OF_MONTH, day_of_month)?;
        let months = parse_field(&MONTH, month)?;
        let dow = parse_field(weekdays.kind(), day_of_week)?;
        let all_days = ((1u64 << 32) - 1) & !1;
        let all_weekdays = (1u64 << 7) - 1;
        Ok(Calendar {
            // Each mask only has bits within its field's range, so the narrowing casts below are lossless.
            minutes: minutes.mask,
            hours: hours.mask as u32,
            days: days.mask as u32,
            last_day: days.last,
            months: months.mask as u16,
            weekdays: dow.mask as u8,
            nth_weekdays: dow.nth,
            any_day_of_month: days.mask == all_days,
            any_day_of_week: dow.mask == all_weekdays,
            time_zone,
        })
    }

    /// Checks one of Buildbot's fields (`minute`, `hour`, `day_of_month`, `month`, `day_of_week`) alone, so that
    /// a config can report every bad field at its own line. `None` for an unknown field name.
    pub fn check_field(field: &str, text: &str) -> Option<Result<(), CalendarError>> {
        let kind =
            [&MINUTE, &HOUR, &DAY_OF_MONTH, &MONTH, &DAY_OF_WEEK_BUILDBOT].into_iter().find(|k| k.field == field)?;
        Some(parse_field(kind, text).map(|_| ()))
    }

    /// Checks a time zone name as [`Calendar::from_fields`] reads it.
    pub fn check_time_zone(name: &str) -> Result<(), CalendarError> {
        name.parse::<Tz>().map(|_| ()).map_err(|_| CalendarError::TimeZone { name: name.to_string() })
    }

    /// Whether the calendar fires at all (`day_of_month = 30, month = 2` never does). Looks ahead a whole
    /// Gregorian cycle from the Unix epoch, after which every calendar repeats.
    pub fn ever_fires(&self) -> bool {
        self.next_after(DateTime::<Utc>::UNIX_EPOCH).is_some()
    }

    /// The time zone the fields are read in.
    pub fn time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The first firing strictly after `after`, as a zoned time; `None` if it never fires (e.g. the 30th of
    /// February).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        let start = after.with_timezone(&self.time_zone).naive_local();
        let limit_year = start.year().saturating_add(SEARCH_YEARS);
        let mut wall = start.with_second(0)?.with_nanosecond(0)?;
        // The wall-clock → instant mapping below is monotonic (gaps map to their end, repeated times to their
        // first occurrence), so the first matching wall-clock time whose instant is after `after` is the answer,
        // and no wall-clock time before `after`'s own can be.
        for _ in 0..MAX_REJECTED_CANDIDATES {
            wall = self.next_matching_wall_time(wall, limit_year)?;
            if let Some(instant) = self.instant_of(wall) {
                if instant.with_timezone(&Utc) > after {
                    return Some(instant);
                }
            }
            wall = wall.checked_add_signed(TimeDelta::minutes(1))?;
        }
        None
    }

    /// All firings in `[from, to)`, in order, at most `limit` of them.
    pub fn firings(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<DateTime<Tz>> {
        let mut firings = Vec::new();
        let Some(mut cursor) = from.checked_sub_signed(TimeDelta::nanoseconds(1)) else {
            return firings;
        };
        while firings.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next.with_timezone(&Utc) < to => {
                    cursor = next.with_timezone(&Utc);
                    firings.push(next);
                }
                _ => break,
            }
        }
        firings
    }

    /// Whether a wall-clock minute matches the fields (the brute-force check of the tests).
    #[cfg(test)]
    fn matches(&self, wall: NaiveDateTime) -> bool {
        self.months & (1 << wall.month()) != 0
            && self.day_matches(wall.date())
            && self.hours & (1 << wall.hour()) != 0
            && self.minutes & (1 << wall.minute()) != 0
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day_of_month = || self.days & (1 << date.day()) != 0 || (self.last_day && is_last_day_of_month(date));
        let day_of_week = || {
            let weekday = date.weekday().num_days_from_monday() as u8;
            let nth = ((date.day() - 1) / 7 + 1) as u8;
            self.weekdays & (1 << weekday) != 0 || self.nth_weekdays.contains(&(weekday, nth))
        };
        match (self.any_day_of_month, self.any_day_of_week) {
            (true, true) => true,
            (true, false) => day_of_week(),
            (false, true) => day_of_month(),
            (false, false) => day_of_month() || day_of_week(),
        }
    }

    /// The first wall-clock minute at or after `start` that matches, searching days then hours then minutes.
    fn next_matching_wall_time(&self, start: NaiveDateTime, limit_year: i32) -> Option<NaiveDateTime> {
        let mut date = start.date();
        let mut from_minute = start.hour() * 60 + start.minute();
        while date.year() <= limit_year {
            if self.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                from_minute = 0;
                continue;
            }
            if self.day_matches(date) {
                if let Some((hour, minute)) = self.first_time_of_day_from(from_minute) {
                    return date.and_hms_opt(hour, minute, 0);
                }
            }
            date = date.succ_opt()?;
            from_minute = 0;
        }
        None
    }

    /// The first (hour, minute) at or after `from_minute` (minutes since midnight) that matches.
    fn first_time_of_day_from(&self, from_minute: u32) -> Option<(u32, u32)> {
        let (mut hour, mut minute) = (from_minute / 60, from_minute % 60);
        while hour < 24 {
            if self.hours & (1 << hour) != 0 {
                let rest = self.minutes >> minute;
                if rest != 0 {
                    return Some((hour, minute + rest.trailing_zeros()));
                }
            }
            hour += 1;
            minute = 0;
        }
        None
    }

    /// The instant a wall-clock time fires at: itself; its first occurrence if it is repeated; the first valid
    /// wall-clock minute after the gap if it does not exist.
    fn instant_of(&self, wall: NaiveDateTime) -> Option<DateTime<Tz>> {
        let mut wall = wall;
        for _ in 0..MAX_GAP_MINUTES {
            match self.time_zone.from_local_datetime(&wall) {
                MappedLocalTime::Single(instant) => return Some(instant),
                MappedLocalTime::Ambiguous(first, second) => return Some(first.min(second)),
                MappedLocalTime::None => wall = wall.checked_add_signed(TimeDelta::minutes(1))?,
            }
        }
        None
    }
}

/// What `kiln schedule-preview` prints: one line per firing of each `(scheduler name, builders, calendar)` in
/// `[from, from + days)`, sorted by time then scheduler name:
/// `2026-11-29T03:00:00+01:00 support support-linux,support-mac`.
pub fn preview(schedules: &[(String, Vec<String>, Calendar)], from: DateTime<Utc>, days: u32) -> Vec<String> {
    let to = from.checked_add_signed(TimeDelta::days(i64::from(days))).unwrap_or(DateTime::<Utc>::MAX_UTC);
    // A calendar fires at most once a minute.
    let limit = (days as usize).saturating_mul(24 * 60).saturating_add(1);
    let mut rows: Vec<(DateTime<Utc>, &str, String)> = Vec::new();
    for (name, builders, calendar) in schedules {
        for firing in calendar.firings(from, to, limit) {
            let time = firing.to_rfc3339_opts(SecondsFormat::Secs, false);
            let line = if builders.is_empty() {
                format!("{time} {name}")
            } else {
                format!("{time} {name} {}", builders.join(","))
            };
            rows.push((firing.with_timezone(&Utc), name, line));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    rows.into_iter().map(|(_, _, line)| line).collect()
}

fn is_last_day_of_month(date: NaiveDate) -> bool {
    date.succ_opt().is_none_or(|next| next.month() != date.month())
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

/// The numbering of the day of week.
#[derive(Clone, Copy)]
enum Weekdays {
    /// Buildbot's `dayOfWeek`: Monday = 0; numbers only alone.
    Buildbot,
    /// cron's: Sunday = 0 or 7.
    Cron,
}

impl Weekdays {
    fn kind(self) -> &'static FieldKind {
        match self {
            Weekdays::Buildbot => &DAY_OF_WEEK_BUILDBOT,
            Weekdays::Cron => &DAY_OF_WEEK_CRON,
        }
    }
}

/// How one field is written and what its values mean.
struct FieldKind {
    field: &'static str,
    /// The smallest and largest value as written.
    low: u32,
    high: u32,
    /// Names and the value they stand for, as written.
    names: &'static [(&'static str, u32)],
    /// What an unknown word is called in errors, with a hint: "unknown day 'xyz' (…)".
    unknown: &'static str,
    hint: &'static str,
    /// Ranges may wrap around (`fri-mon`), and `#n` is allowed: the day of week.
    weekday: bool,
    /// Numbers may only stand alone (Buildbot's day of week).
    numbers_only_alone: bool,
    /// `L` is allowed: the day of month.
    last: bool,
    /// Maps a value as written to its bit.
    bit: fn(u32) -> u32,
}

const MONTH_NAMES: &[(&str, u32)] = &[
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
    ("january", 1),
    ("february", 2),
    ("march", 3),
    ("april", 4),
    ("june", 6),
    ("july", 7),
    ("august", 8),
    ("september", 9),
    ("october", 10),
    ("november", 11),
    ("december", 12),
];

/// Day names with Monday = 0 (Buildbot's numbering, and the bit order).
const DAY_NAMES_FROM_MONDAY: &[(&str, u32)] = &[
    ("mon", 0),
    ("tue", 1),
    ("wed", 2),
    ("thu", 3),
    ("fri", 4),
    ("sat", 5),
    ("sun", 6),
    ("monday", 0),
    ("tuesday", 1),
    ("wednesday", 2),
    ("thursday", 3),
    ("friday", 4),
    ("saturday", 5),
    ("sunday", 6),
];

/// Day names with Sunday = 0 (cron's numbering).
const DAY_NAMES_FROM_SUNDAY: &[(&str, u32)] = &[
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
    ("sunday", 0),
    ("monday", 1),
    ("tuesday", 2),
    ("wednesday", 3),
    ("thursday", 4),
    ("friday", 5),
    ("saturday", 6),
];

fn identity(value: u32) -> u32 {
    value
}

fn cron_weekday_to_bit(value: u32) -> u32 {
    (value + 6) % 7
}

const NUMBER: FieldKind = FieldKind {
    field: "",
    low: 0,
    high: 0,
    names: &[],
    unknown: "",
    hint: "",
    weekday: false,
    numbers_only_alone: false,
    last: false,
    bit: identity,
};
const MINUTE: FieldKind = FieldKind { field: "minute", high: 59, hint: "(use 0-59)", ..NUMBER };
const HOUR: FieldKind = FieldKind { field: "hour", high: 23, hint: "(use 0-23)", ..NUMBER };
const DAY_OF_MONTH: FieldKind =
    FieldKind { field: "day_of_month", low: 1, high: 31, hint: "(use 1-31 or L)", last: true, ..NUMBER };
const MONTH: FieldKind = FieldKind {
    field: "month",
    low: 1,
    high: 12,
    names: MONTH_NAMES,
    unknown: "month",
    hint: "(use jan, feb, … or 1-12)",
    ..NUMBER
};
const DAY_OF_WEEK_BUILDBOT: FieldKind = FieldKind {
    field: "day_of_week",
    low: 0,
    high: 6,
    names: DAY_NAMES_FROM_MONDAY,
    unknown: "day",
    hint: "(use sun, mon, … or 0-6 with Monday = 0)",
    weekday: true,
    numbers_only_alone: true,
    ..NUMBER
};
const DAY_OF_WEEK_CRON: FieldKind = FieldKind {
    field: "day_of_week",
    low: 0,
    high: 7,
    names: DAY_NAMES_FROM_SUNDAY,
    unknown: "day",
    hint: "(use sun, mon, … or 0-7 with Sunday = 0 or 7)",
    weekday: true,
    bit: cron_weekday_to_bit,
    ..NUMBER
};

/// A parsed field: the bits of the values it matches, plus `L` and `#n`.
struct ParsedField {
    mask: u64,
    last: bool,
    nth: Vec<(u8, u8)>,
}

fn parse_field(kind: &FieldKind, text: &str) -> Result<ParsedField, CalendarError> {
    let error = |reason: String| CalendarError::Field { field: kind.field, text: text.to_string(), reason };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(error(format!("empty value {}", kind.hint)));
    }
    let mut parsed = ParsedField { mask: 0, last: false, nth: Vec::new() };
    for element in trimmed.split(',') {
        parse_element(kind, element.trim(), &mut parsed).map_err(error)?;
    }
    Ok(parsed)
}

fn parse_element(kind: &FieldKind, element: &str, parsed: &mut ParsedField) -> Result<(), String> {
    if element.is_empty() {
        return Err("empty element in the list".to_string());
    }
    let negative = element.strip_prefix('-').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if negative {
        return Err(format!("{element} is out of range {}", kind.hint));
    }
    if kind.last && element.eq_ignore_ascii_case("l") {
        parsed.last = true;
        return Ok(());
    }
    if kind.numbers_only_alone && is_ambiguous_weekday(element) {
        return Err(format!(
            "'{element}': numbers in day_of_week may only stand alone (0-6 with Monday = 0): Buildbot hands ranges, \
             steps and '#' to croniter with Sunday = 0, so write names instead, e.g. 'mon-fri', 'mon#1'"
        ));
    }
    if kind.weekday {
        if let Some((day, n)) = element.split_once('#') {
            let day = parse_value(kind, day)?;
            let n: u8 = match n.parse() {
                Ok(n @ 1..=5) => n,
                _ => return Err(format!("'{element}': '#' takes the week of the month, 1-5")),
            };
            // The bits of the day of week are at most 6.
            parsed.nth.push(((kind.bit)(day) as u8, n));
            return Ok(());
        }
    }
    let (range, step) = match element.split_once('/') {
        Some((range, step)) => match step.parse::<u32>() {
            Ok(step) if step >= 1 => (range, Some(step)),
            _ => return Err(format!("'{element}': the step '{step}' is not a positive number")),
        },
        None => (element, None),
    };
    let (first, last) = if range == "*" {
        (kind.low, kind.high)
    } else if let Some((first, last)) = range.split_once('-') {
        (parse_value(kind, first)?, parse_value(kind, last)?)
    } else {
        let value = parse_value(kind, range)?;
        // `5/20` is `5-59/20`, as in croniter and Vixie cron.
        (value, if step.is_some() { kind.high } else { value })
    };
    let values: Vec<u32> = if first <= last {
        (first..=last).collect()
    } else if kind.weekday {
        // `fri-mon`: around the end of the week.
        let week_end = kind.low + 6;
        (first..=week_end.max(first)).chain(kind.low..=last).collect()
    } else {
        return Err(format!("the range '{range}' goes backwards"));
    };
    for value in values.into_iter().step_by(step.unwrap_or(1) as usize) {
        parsed.mask |= 1 << (kind.bit)(value);
    }
    Ok(())
}

/// Whether Buildbot's day of week uses a number other than alone (`0-4`, `1#1`, `mon-4`) or steps from `*`
/// (`*/2`): Buildbot hands those to croniter unconverted, with Sunday = 0.
fn is_ambiguous_weekday(element: &str) -> bool {
    let is_number = |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit());
    if is_number(element) {
        return false;
    }
    let (range, step) = match element.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (element, None),
    };
    let day = range.split_once('#').map_or(range, |(day, _)| day);
    (range == "*" && step.is_some()) || day.split('-').any(is_number)
}

fn parse_value(kind: &FieldKind, text: &str) -> Result<u32, String> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(value) if (kind.low..=kind.high).contains(&value) => Ok(value),
            _ => Err(format!("{text} is out of range {}", kind.hint)),
        };
    }
    if let Some((_, value)) = kind.names.iter().find(|(name, _)| text.eq_ignore_ascii_case(name)) {
        return Ok(*value);
    }
    if kind.names.is_empty() {
        Err(format!("'{text}' is not a number {}", kind.hint))
    } else {
        Err(format!("unknown {} '{text}' {}", kind.unknown, kind.hint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MADRID: &str = "Europe/Madrid";

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn fields(minute: &str, hour: &str, day_of_month: &str, month: &str, day_of_week: &str) -> CalendarFields {
        CalendarFields {
            minute: minute.to_string(),
            hour: hour.to_string(),
            day_of_month: day_of_month.to_string(),
            month: month.to_string(),
            day_of_week: day_of_week.to_string(),
        }
    }

    fn at(hour: &str, day_of_week: &str) -> Calendar {
        Calendar::from_fields(&fields("0", hour, "*", "*", day_of_week), MADRID).unwrap()
    }

    fn times(firings: &[DateTime<Tz>]) -> Vec<String> {
        firings.iter().map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false)).collect()
    }

    fn field_error(fields: &CalendarFields) -> String {
        Calendar::from_fields(fields, MADRID).unwrap_err().to_string()
    }

    /// The seed: support on Sundays, production on Saturdays, devel on Monday, Wednesday and Friday.
    fn seed(day_of_week: [&str; 3]) -> Vec<(String, Vec<String>, Calendar)> {
        vec![
            ("support".to_string(), vec!["support-linux".to_string()], at("3", day_of_week[0])),
            ("production".to_string(), vec!["production-linux".to_string()], at("3", day_of_week[1])),
            ("devel".to_string(), vec!["devel-linux".to_string(), "devel-mac".to_string()], at("3", day_of_week[2])),
        ]
    }

    #[test]
    fn defaults_are_buildbots() {
        let calendar = Calendar::from_fields(&CalendarFields::default(), "UTC").unwrap();
        let firings = calendar.firings(utc("2026-05-01T00:00:00Z"), utc("2026-05-01T03:00:00Z"), 100);
        assert_eq!(
            times(&firings),
            ["2026-05-01T00:00:00+00:00", "2026-05-01T01:00:00+00:00", "2026-05-01T02:00:00+00:00"]
        );
    }

    #[test]
    fn seed_week_in_winter() {
        // Monday 2026-11-23 00:00 in Madrid.
        let from = utc("2026-11-23T00:00:00+01:00");
        let expected = [
            "2026-11-23T03:00:00+01:00 devel devel-linux,devel-mac",
            "2026-11-25T03:00:00+01:00 devel devel-linux,devel-mac",
            "2026-11-27T03:00:00+01:00 devel devel-linux,devel-mac",
            "2026-11-28T03:00:00+01:00 production production-linux",
            "2026-11-29T03:00:00+01:00 support support-linux",
        ];
        assert_eq!(preview(&seed(["sun", "sat", "mon,wed,fri"]), from, 7), expected);
        assert_eq!(preview(&seed(["6", "5", "0,2,4"]), from, 7), expected);
        assert_eq!(preview(&seed(["Sunday", "SAT", "wed,0,fri"]), from, 7), expected);
    }

    #[test]
    fn seed_week_in_summer() {
        let from = utc("2026-06-01T00:00:00+02:00");
        assert_eq!(
            preview(&seed(["sun", "sat", "mon,wed,fri"]), from, 7),
            [
                "2026-06-01T03:00:00+02:00 devel devel-linux,devel-mac",
                "2026-06-03T03:00:00+02:00 devel devel-linux,devel-mac",
                "2026-06-05T03:00:00+02:00 devel devel-linux,devel-mac",
                "2026-06-06T03:00:00+02:00 production production-linux",
                "2026-06-07T03:00:00+02:00 support support-linux",
            ]
        );
    }

    #[test]
    fn seed_weeks_across_both_dst_changes() {
        // Thursday 2026-03-26 to Wednesday 2026-04-01: Madrid springs forward on Sunday 2026-03-29 at 02:00.
        assert_eq!(
            preview(&seed(["sun", "sat", "mon,wed,fri"]), utc("2026-03-26T00:00:00+01:00"), 7),
            [
                "2026-03-27T03:00:00+01:00 devel devel-linux,devel-mac",
                "2026-03-28T03:00:00+01:00 production production-linux",
                "2026-03-29T03:00:00+02:00 support support-linux",
                "2026-03-30T03:00:00+02:00 devel devel-linux,devel-mac",
                "2026-04-01T03:00:00+02:00 devel devel-linux,devel-mac",
            ]
        );
        // Madrid falls back on Sunday 2026-10-25 at 03:00.
        assert_eq!(
            preview(&seed(["sun", "sat", "mon,wed,fri"]), utc("2026-10-22T00:00:00+02:00"), 7),
            [
                "2026-10-23T03:00:00+02:00 devel devel-linux,devel-mac",
                "2026-10-24T03:00:00+02:00 production production-linux",
                "2026-10-25T03:00:00+01:00 support support-linux",
                "2026-10-26T03:00:00+01:00 devel devel-linux,devel-mac",
                "2026-10-28T03:00:00+01:00 devel devel-linux,devel-mac",
            ]
        );
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_fires_at_the_end_of_the_gap() {
        let calendar = Calendar::from_fields(&fields("30", "2", "*", "*", "*"), MADRID).unwrap();
        let firings = calendar.firings(utc("2026-03-28T00:00:00Z"), utc("2026-03-31T00:00:00Z"), 100);
        assert_eq!(
            times(&firings),
            ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
        );
        // From inside the gap's firing, the next is the next day's.
        let next = calendar.next_after(utc("2026-03-29T01:00:00Z")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-03-30T02:30:00+02:00");
    }

    #[test]
    fn hourly_on_the_spring_forward_day_fires_23_times() {
        let calendar = Calendar::from_fields(&fields("0", "*", "*", "*", "*"), MADRID).unwrap();
        let firings = calendar.firings(utc("2026-03-29T00:00:00+01:00"), utc("2026-03-30T00:00:00+02:00"), 100);
        let firings = times(&firings);
        assert_eq!(firings.len(), 23);
        assert_eq!(
            firings[..4],
            [
                "2026-03-29T00:00:00+01:00",
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T04:00:00+02:00"
            ]
        );
        assert_eq!(firings[22], "2026-03-29T23:00:00+02:00");

        let quarters = Calendar::from_fields(&fields("*/15", "*", "*", "*", "*"), MADRID).unwrap();
        let firings = quarters.firings(utc("2026-03-29T01:30:00+01:00"), utc("2026-03-29T03:30:00+02:00"), 100);
        assert_eq!(
            times(&firings),
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00"
            ]
        );
    }

    #[test]
    fn a_repeated_time_on_the_fall_back_day_fires_once() {
        let calendar = Calendar::from_fields(&fields("30", "2", "*", "*", "*"), MADRID).unwrap();
        let firings = calendar.firings(utc("2026-10-24T00:00:00Z"), utc("2026-10-27T00:00:00Z"), 100);
        assert_eq!(
            times(&firings),
            ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
        );
        // From the second 02:10 (+01:00), the second 02:30 is not a firing.
        let next = calendar.next_after(utc("2026-10-25T02:10:00+01:00")).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-10-26T02:30:00+01:00");
    }

    #[test]
    fn hourly_on_the_fall_back_day_fires_24_times() {
        let calendar = Calendar::from_fields(&fields("0", "*", "*", "*", "*"), MADRID).unwrap();
        let firings = calendar.firings(utc("2026-10-25T00:00:00+02:00"), utc("2026-10-26T00:00:00+01:00"), 100);
        let text = times(&firings);
        assert_eq!(text.len(), 24);
        assert_eq!(
            text[..4],
            [
                "2026-10-25T00:00:00+02:00",
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
        let gaps: Vec<i64> = firings.windows(2).map(|w| (w[1] - w[0]).num_minutes()).collect();
        assert_eq!(gaps.iter().filter(|&&g| g == 60).count(), 22);
        assert_eq!(gaps[2], 120, "the second 02:00 (+01:00) does not fire");
    }

    #[test]
    fn last_day_of_month() {
        let calendar = Calendar::from_fields(&fields("0", "0", "L", "*", "*"), "UTC").unwrap();
        let firings = calendar.firings(utc("2027-12-01T00:00:00Z"), utc("2028-05-01T00:00:00Z"), 100);
        assert_eq!(
            times(&firings),
            [
                "2027-12-31T00:00:00+00:00",
                "2028-01-31T00:00:00+00:00",
                "2028-02-29T00:00:00+00:00",
                "2028-03-31T00:00:00+00:00",
                "2028-04-30T00:00:00+00:00"
            ]
        );
        let february = Calendar::from_fields(&fields("0", "0", "L", "feb", "*"), "UTC").unwrap();
        let firings = february.firings(utc("2027-01-01T00:00:00Z"), utc("2029-01-01T00:00:00Z"), 100);
        assert_eq!(times(&firings), ["2027-02-28T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]);
        let first_and_last = Calendar::from_fields(&fields("0", "0", "1,L", "jun", "*"), "UTC").unwrap();
        let firings = first_and_last.firings(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"), 100);
        assert_eq!(times(&firings), ["2026-06-01T00:00:00+00:00", "2026-06-30T00:00:00+00:00"]);
    }

    #[test]
    fn never_firing_calendar() {
        let calendar = Calendar::from_fields(&fields("0", "0", "30", "feb", "*"), "UTC").unwrap();
        assert_eq!(calendar.next_after(utc("2026-01-01T00:00:00Z")), None);
        assert!(calendar.firings(utc("2026-01-01T00:00:00Z"), utc("2030-01-01T00:00:00Z"), 10).is_empty());
    }

    #[test]
    fn steps_ranges_and_lists() {
        let calendar = Calendar::from_fields(&fields("*/15", "9-10", "*", "*", "*"), "UTC").unwrap();
        let firings = calendar.firings(utc("2026-05-01T00:00:00Z"), utc("2026-05-02T00:00:00Z"), 100);
        assert_eq!(
            times(&firings),
            [
                "2026-05-01T09:00:00+00:00",
                "2026-05-01T09:15:00+00:00",
                "2026-05-01T09:30:00+00:00",
                "2026-05-01T09:45:00+00:00",
                "2026-05-01T10:00:00+00:00",
                "2026-05-01T10:15:00+00:00",
                "2026-05-01T10:30:00+00:00",
                "2026-05-01T10:45:00+00:00"
            ]
        );
        let calendar = Calendar::from_fields(&fields("5/20,1", "8-17/4", "*", "*", "*"), "UTC").unwrap();
        let firings = calendar.firings(utc("2026-05-01T00:00:00Z"), utc("2026-05-01T13:00:00Z"), 100);
        let expected: Vec<String> = ["08", "12"]
            .iter()
            .flat_map(|h| ["01", "05", "25", "45"].map(|m| format!("2026-05-01T{h}:{m}:00+00:00")))
            .collect();
        assert_eq!(times(&firings), expected);
    }

    #[test]
    fn weekday_ranges() {
        // Monday 2026-11-23 to Sunday 2026-11-29.
        let week = (utc("2026-11-23T00:00:00Z"), utc("2026-11-30T00:00:00Z"));
        let days = |day_of_week: &str| -> Vec<u32> {
            let calendar = Calendar::from_fields(&fields("0", "3", "*", "*", day_of_week), "UTC").unwrap();
            calendar.firings(week.0, week.1, 100).iter().map(|t| t.day()).collect()
        };
        assert_eq!(days("mon-fri"), [23, 24, 25, 26, 27]);
        assert_eq!(days("sat-mon"), [23, 28, 29]);
        assert_eq!(days("mon-sun/2"), [23, 25, 27, 29]);
        assert_eq!(days("*"), [23, 24, 25, 26, 27, 28, 29]);
    }

    #[test]
    fn month_names() {
        let count = |month: &str| {
            let calendar = Calendar::from_fields(&fields("0", "0", "1", month, "*"), "UTC").unwrap();
            let firings = calendar.firings(utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"), 100);
            firings.iter().map(|t| t.month()).collect::<Vec<_>>()
        };
        assert_eq!(count("jan,jul"), [1, 7]);
        assert_eq!(count("JUN-aug"), [6, 7, 8]);
        assert_eq!(count("march,12"), [3, 12]);
        assert_eq!(count("*/3"), [1, 4, 7, 10]);
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_are_restricted() {
        // September 2026 starts on a Tuesday: the 1st, and every Monday.
        let calendar = Calendar::from_fields(&fields("0", "0", "1", "*", "mon"), "UTC").unwrap();
        let firings = calendar.firings(utc("2026-09-01T00:00:00Z"), utc("2026-10-01T00:00:00Z"), 100);
        assert_eq!(firings.iter().map(|t| t.day()).collect::<Vec<_>>(), [1, 7, 14, 21, 28]);
        // A field that matches every value counts as unrestricted, as in croniter.
        let calendar = Calendar::from_fields(&fields("0", "0", "1-31", "*", "mon"), "UTC").unwrap();
        assert_eq!(calendar, Calendar::from_fields(&fields("0", "0", "*", "*", "mon"), "UTC").unwrap());
    }

    #[test]
    fn nth_weekday_of_the_month() {
        let calendar = Calendar::from_fields(&fields("0", "0", "*", "*", "mon#1"), "UTC").unwrap();
        let firings = calendar.firings(utc("2026-09-01T00:00:00Z"), utc("2026-12-01T00:00:00Z"), 100);
        assert_eq!(
            times(&firings),
            ["2026-09-07T00:00:00+00:00", "2026-10-05T00:00:00+00:00", "2026-11-02T00:00:00+00:00"]
        );
        assert_eq!(calendar, Calendar::from_cron("0 0 * * 1#1", "UTC").unwrap());
    }

    #[test]
    fn cron_equals_fields_for_the_seed() {
        for (cron, day_of_week) in [
            ("0 3 * * sun", "sun"),
            ("0 3 * * 0", "6"),
            ("0 3 * * 7", "sun"),
            ("0 3 * * 6", "sat"),
            ("0 3 * * 1,3,5", "0,2,4"),
            ("0 3 * * mon,wed,fri", "mon,wed,fri"),
            ("0 3 * * 1-5", "mon-fri"),
            ("0 3 * * 5-1", "fri-mon"),
            ("0 3 * * 0-6", "*"),
        ] {
            assert_eq!(
                Calendar::from_cron(cron, MADRID).unwrap(),
                at("3", day_of_week),
                "{cron} against day_of_week {day_of_week}"
            );
        }
        assert_eq!(
            Calendar::from_cron("@daily", "UTC").unwrap(),
            Calendar::from_fields(&fields("0", "0", "*", "*", "*"), "UTC").unwrap()
        );
    }

    #[test]
    fn errors_name_the_field_and_the_text() {
        let base = CalendarFields::default();
        let cases = [
            (
                CalendarFields { day_of_week: "sunday,xyz".into(), ..base.clone() },
                "day_of_week: 'sunday,xyz': unknown day 'xyz' (use sun, mon, … or 0-6 with Monday = 0)",
            ),
            (CalendarFields { minute: "60".into(), ..base.clone() }, "minute: '60': 60 is out of range (use 0-59)"),
            (CalendarFields { minute: "".into(), ..base.clone() }, "minute: '': empty value (use 0-59)"),
            (CalendarFields { hour: "x".into(), ..base.clone() }, "hour: 'x': 'x' is not a number (use 0-23)"),
            (CalendarFields { hour: "17-9".into(), ..base.clone() }, "hour: '17-9': the range '17-9' goes backwards"),
            (
                CalendarFields { hour: "*/0".into(), ..base.clone() },
                "hour: '*/0': '*/0': the step '0' is not a positive number",
            ),
            (
                CalendarFields { day_of_month: "0".into(), ..base.clone() },
                "day_of_month: '0': 0 is out of range (use 1-31 or L)",
            ),
            (
                CalendarFields { day_of_month: "1,,2".into(), ..base.clone() },
                "day_of_month: '1,,2': empty element in the list",
            ),
            (
                CalendarFields { month: "foo".into(), ..base.clone() },
                "month: 'foo': unknown month 'foo' (use jan, feb, … or 1-12)",
            ),
            (
                CalendarFields { month: "13".into(), ..base.clone() },
                "month: '13': 13 is out of range (use jan, feb, … or 1-12)",
            ),
            (
                CalendarFields { day_of_week: "7".into(), ..base.clone() },
                "day_of_week: '7': 7 is out of range (use sun, mon, … or 0-6 with Monday = 0)",
            ),
            (
                CalendarFields { day_of_week: "mon#6".into(), ..base.clone() },
                "day_of_week: 'mon#6': 'mon#6': '#' takes the week of the month, 1-5",
            ),
        ];
        for (fields, message) in cases {
            assert_eq!(field_error(&fields), message);
        }
        for ambiguous in ["0-4", "1#1", "*/2", "mon-4"] {
            let message = field_error(&CalendarFields { day_of_week: ambiguous.into(), ..base.clone() });
            assert!(
                message.starts_with(&format!("day_of_week: '{ambiguous}': '{ambiguous}': numbers in day_of_week")),
                "{message}"
            );
            assert!(message.contains("'mon-fri'"), "{message}");
        }
        assert_eq!(
            Calendar::from_fields(&base, "Mars/Olympus").unwrap_err().to_string(),
            "time zone 'Mars/Olympus': unknown (use an IANA name such as 'Europe/Madrid', or 'UTC')"
        );
        assert_eq!(
            Calendar::from_cron("0 3 * *", "UTC").unwrap_err().to_string(),
            "cron expression '0 3 * *': expected 5 fields (minute hour day-of-month month day-of-week), found 4"
        );
        assert_eq!(
            Calendar::from_cron("0 3 * * 8", "UTC").unwrap_err().to_string(),
            "day_of_week: '8': 8 is out of range (use sun, mon, … or 0-7 with Sunday = 0 or 7)"
        );
    }

    #[test]
    fn preview_sorts_by_time_then_scheduler_name() {
        let daily = Calendar::from_fields(&fields("0", "3", "*", "*", "*"), "UTC").unwrap();
        let schedules = vec![
            ("zeta".to_string(), vec!["b1".to_string()], daily.clone()),
            ("alpha".to_string(), vec!["b2".to_string(), "b3".to_string()], daily),
        ];
        assert_eq!(
            preview(&schedules, utc("2026-11-29T00:00:00Z"), 2),
            [
                "2026-11-29T03:00:00+00:00 alpha b2,b3",
                "2026-11-29T03:00:00+00:00 zeta b1",
                "2026-11-30T03:00:00+00:00 alpha b2,b3",
                "2026-11-30T03:00:00+00:00 zeta b1",
            ]
        );
        assert!(preview(&schedules, utc("2026-11-29T00:00:00Z"), 0).is_empty());
    }

    #[test]
    fn firings_include_from_and_exclude_to_and_respect_the_limit() {
        let calendar = Calendar::from_fields(&fields("0", "*", "*", "*", "*"), "UTC").unwrap();
        let firings = calendar.firings(utc("2026-05-01T01:00:00Z"), utc("2026-05-01T03:00:00Z"), 100);
        assert_eq!(times(&firings), ["2026-05-01T01:00:00+00:00", "2026-05-01T02:00:00+00:00"]);
        assert_eq!(calendar.firings(utc("2026-05-01T01:00:00Z"), utc("2026-05-02T00:00:00Z"), 3).len(), 3);
        assert_eq!(
            calendar.next_after(utc("2026-05-01T01:00:00.5Z")).unwrap().to_rfc3339(),
            "2026-05-01T02:00:00+00:00"
        );
    }

    /// Whether the calendar fires at UTC minute `instant`, decided instant by instant (not wall time by wall
    /// time as `next_after` searches): its wall-clock time matches and this is its first occurrence, or it ends
    /// a gap in which a wall-clock time matches.
    fn fires_at(calendar: &Calendar, instant: DateTime<Utc>) -> bool {
        let tz = calendar.time_zone();
        let wall = instant.with_timezone(&tz).naive_local();
        if calendar.matches(wall) && tz.from_local_datetime(&wall).earliest().unwrap().with_timezone(&Utc) == instant {
            return true;
        }
        let before = (instant - TimeDelta::minutes(1)).with_timezone(&tz).naive_local();
        let mut skipped = before + TimeDelta::minutes(1);
        while skipped < wall {
            if calendar.matches(skipped) {
                return true;
            }
            skipped += TimeDelta::minutes(1);
        }
        false
    }

    fn spec(low: u32, high: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            (low..=high).prop_map(|v| v.to_string()),
            (low..=high, low..=high).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (1..=(high - low + 1).min(20)).prop_map(|s| format!("*/{s}")),
            prop::collection::vec(low..=high, 1..4).prop_map(|v| v
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")),
        ]
    }

    fn day_of_week_spec() -> impl Strategy<Value = String> {
        const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        prop_oneof![
            Just("*".to_string()),
            prop::collection::vec(0..=6u32, 1..4).prop_map(|v| v
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")),
            (0..7usize, 0..7usize).prop_map(|(a, b)| format!("{}-{}", NAMES[a], NAMES[b])),
            (0..7usize, 1..=5u8).prop_map(|(a, n)| format!("{}#{n}", NAMES[a])),
        ]
    }

    fn calendar_fields() -> impl Strategy<Value = CalendarFields> {
        (
            spec(0, 59),
            spec(0, 23),
            prop_oneof![spec(1, 31), Just("L".to_string()), Just("*".to_string())],
            prop_oneof![spec(1, 12), Just("*".to_string())],
            day_of_week_spec(),
        )
            .prop_map(|(minute, hour, day_of_month, month, day_of_week)| CalendarFields {
                minute,
                hour,
                day_of_month,
                month,
                day_of_week,
            })
    }

    /// 2026's DST changes, as UTC timestamps: Madrid, New York, Lord Howe (30 minutes).
    const DST_CHANGES: [i64; 6] = [
        1_774_746_000, // 2026-03-29T01:00:00Z
        1_792_890_000, // 2026-10-25T01:00:00Z
        1_772_953_200, // 2026-03-08T07:00:00Z
        1_793_512_800, // 2026-11-01T06:00:00Z
        1_775_314_800, // 2026-04-04T15:00:00Z
        1_791_041_400, // 2026-10-03T15:30:00Z
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn next_after_is_the_first_firing_after(
            fields in calendar_fields(),
            zone in prop::sample::select(vec!["UTC", "Europe/Madrid", "America/New_York", "Australia/Lord_Howe"]),
            // 2026-01-01 to 2029-01-01, to the second, or within two days before a DST change of these zones.
            seconds in prop_oneof![
                1_767_225_600i64..1_861_920_000i64,
                (prop::sample::select(DST_CHANGES.to_vec()), 0..2 * 86_400i64).prop_map(|(change, back)| change - back),
            ],
        ) {
            let calendar = Calendar::from_fields(&fields, zone).unwrap();
            let after = DateTime::from_timestamp(seconds, 0).unwrap();
            let next = calendar.next_after(after).map(|t| t.with_timezone(&Utc));
            let window_end = after + TimeDelta::days(2);
            if let Some(next) = next {
                prop_assert!(next > after);
                prop_assert_eq!(next.timestamp() % 60, 0);
                prop_assert!(fires_at(&calendar, next), "{} does not fire at {}", zone, next);
            }
            // No firing is skipped: brute force over every minute of (after, min(next, after + 2 days)).
            let end = next.map_or(window_end, |next| next.min(window_end));
            let mut minute = DateTime::from_timestamp((seconds / 60 + 1) * 60, 0).unwrap();
            while minute < end {
                prop_assert!(!fires_at(&calendar, minute), "{:?} in {} skips {}", fields, zone, minute);
                minute += TimeDelta::minutes(1);
            }
        }
    }
}
