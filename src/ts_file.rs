//! Labelled sequences in the UEA/UCR archive's `.ts` format, as aeon and sktime write it:
//!
//! ```text
//! # comments, anywhere before @data
//! @problemName BasicMotions
//! @timeStamps false          (true is refused: unroll reads values, not timestamps)
//! @missing false
//! @univariate false
//! @dimensions 6              (C, the channels; 1 when absent)
//! @equalLength true
//! @seriesLength 100
//! @classLabel true Standing Running Walking Badminton
//! @data
//! 1.0,1.0,0.96,…:0.07,0.08,…:…:Standing      one sequence a line: C channels split by `:`,
//!                                              each a comma list of n_b values, the label last
//! ```
//!
//! Every channel of a sequence has its length n_b; sequences may differ where `@equalLength` is
//! false. A missing value (`?`, or `NaN`) is refused with its line and channel: unroll fills
//! nothing in. Classes are numbered in the order `@classLabel` declares them.

use crate::error::{Error, Result};
use std::path::Path;

/// The most values a file may hold in all (2^28 floats: 1 GiB).
pub const MAX_VALUES: usize = 1 << 28;

/// One labelled sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequence {
    /// n_b steps of C values, time-major: `values[t * C + channel]`.
    pub values: Vec<f32>,
    /// The class, an index into [`LabelledSet::classes`].
    pub label: usize,
}

impl Sequence {
    /// n_b: the sequence's steps.
    pub fn len(&self, channels: usize) -> usize {
        self.values.len() / channels
    }
}

/// The sequences of one `.ts` file.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledSet {
    /// `@problemName`, where given.
    pub name: Option<String>,
    /// C: values per step.
    pub channels: usize,
    /// The class names, in `@classLabel`'s order.
    pub classes: Vec<String>,
    /// The sequences, in the file's order.
    pub sequences: Vec<Sequence>,
}

impl LabelledSet {
    /// The longest sequence's steps.
    pub fn max_len(&self) -> usize {
        let c = self.channels;
        self.sequences.iter().map(|s| s.len(c)).max().unwrap_or(0)
    }

    /// The sequences of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        self.sequences.iter().for_each(|s| counts[s.label] += 1);
        counts
    }
}

/// The header so far.
#[derive(Default)]
struct Header {
    name: Option<String>,
    channels: Option<usize>,
    univariate: Option<bool>,
    equal_length: Option<bool>,
    series_length: Option<usize>,
    classes: Option<Vec<String>>,
}

/// Reads a `.ts` file of at most `max_bytes` (see [`crate::data::read_data`]).
pub fn read(path: &Path, max_bytes: u64) -> Result<LabelledSet> {
    let bytes = crate::data::read_data(path, max_bytes)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Error::file(
            path,
            format!(
                "is not UTF-8 text (byte {}); a .ts file is text",
                e.valid_up_to()
            ),
        )
    })?;
    parse(text).map_err(|e| Error::file(path, e))
}

fn flag(value: &str, line: usize, tag: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!(
            "line {line}: {tag} is `{other}`, not true or false"
        )),
    }
}

fn size(value: &str, line: usize, tag: &str) -> Result<usize, String> {
    value
        .parse::<usize>()
        .ok()
        .filter(|&n| n > 0 && n <= MAX_VALUES)
        .ok_or_else(|| format!("line {line}: {tag} is `{value}`, not a size of 1 or more"))
}

impl Header {
    /// Takes one `@tag value` line.
    fn take(&mut self, line: &str, no: usize) -> Result<(), String> {
        let (tag, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match tag.to_ascii_lowercase().as_str() {
            "@problemname" => self.name = Some(rest.to_string()),
            "@timestamps" if flag(rest, no, tag)? => {
                return Err(format!(
                    "line {no}: @timeStamps true: unroll reads sequences of values, not of \
                     (timestamp, value) pairs; write the values alone"
                ));
            }
            "@timestamps" | "@missing" => {
                flag(rest, no, tag)?;
            }
            "@univariate" => self.univariate = Some(flag(rest, no, tag)?),
            "@dimensions" | "@dimension" => self.channels = Some(size(rest, no, tag)?),
            "@equallength" => self.equal_length = Some(flag(rest, no, tag)?),
            "@serieslength" => self.series_length = Some(size(rest, no, tag)?),
            "@classlabel" => {
                let mut words = rest.split_whitespace();
                if !flag(words.next().unwrap_or(""), no, tag)? {
                    return Err(format!(
                        "line {no}: @classLabel false: the file has no labels to learn"
                    ));
                }
                let classes: Vec<String> = words.map(String::from).collect();
                if classes.is_empty() {
                    return Err(format!("line {no}: @classLabel true names no class"));
                }
                if let Some(twice) = classes
                    .iter()
                    .enumerate()
                    .find(|(i, c)| classes[..*i].contains(c))
                {
                    return Err(format!("line {no}: class `{}` is declared twice", twice.1));
                }
                self.classes = Some(classes);
            }
            "@targetlabel" => {
                return Err(format!(
                    "line {no}: @targetLabel marks a regression problem; unroll classifies \
                     (@classLabel)"
                ));
            }
            _ => return Err(format!("line {no}: `{tag}` is not a tag of the .ts format")),
        }
        Ok(())
    }
}

/// Parses the text of a `.ts` file; errors name the line.
pub fn parse(text: &str) -> Result<LabelledSet, String> {
    let mut header = Header::default();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    let mut data_at = None;
    for (no, line) in lines.by_ref() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !line.starts_with('@') {
            return Err(format!(
                "line {no}: a value line before @data (the header's tags come first)"
            ));
        }
        if line.eq_ignore_ascii_case("@data") {
            data_at = Some(no);
            break;
        }
        header.take(line, no)?;
    }
    data_at.ok_or("the file has no @data line: it holds no sequences")?;
    let classes = header
        .classes
        .clone()
        .ok_or("the header has no @classLabel line naming the classes")?;
    let channels = header.channels.unwrap_or(1);
    if header.univariate == Some(true) && channels != 1 {
        return Err(format!(
            "the header says @univariate true and @dimensions {channels}"
        ));
    }
    let mut set = LabelledSet {
        name: header.name.clone(),
        channels,
        classes,
        sequences: Vec::new(),
    };
    let mut total = 0usize;
    for (no, line) in lines {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let s = sequence(line, no, &set)?;
        total += s.values.len();
        if total > MAX_VALUES {
            return Err(format!(
                "line {no}: the file holds more than {MAX_VALUES} values, more than unroll reads"
            ));
        }
        set.sequences.push(s);
    }
    check_lengths(&set, &header)?;
    Ok(set)
}

/// One `@data` line: C channels and the label.
fn sequence(line: &str, no: usize, set: &LabelledSet) -> Result<Sequence, String> {
    let fields: Vec<&str> = line.split(':').collect();
    let c = set.channels;
    if fields.len() != c + 1 {
        return Err(format!(
            "line {no}: {} channels and a label, the header says {c} channels (@dimensions)",
            fields.len().saturating_sub(1)
        ));
    }
    let name = fields[c].trim();
    let label = set.classes.iter().position(|k| k == name).ok_or_else(|| {
        format!(
            "line {no}: label `{name}` is not one of @classLabel's classes ({})",
            set.classes.join(" ")
        )
    })?;
    let mut channels = Vec::with_capacity(c);
    for (k, field) in fields[..c].iter().enumerate() {
        let values = field
            .split(',')
            .enumerate()
            .map(|(i, v)| value(v.trim(), (no, k + 1, i + 1)))
            .collect::<Result<Vec<f32>, String>>()?;
        channels.push(values);
    }
    let n = channels[0].len();
    if let Some(k) = channels.iter().position(|v| v.len() != n) {
        return Err(format!(
            "line {no}: channel {} has {} values, channel 1 has {n}: every channel of a sequence \
             has its length",
            k + 1,
            channels[k].len()
        ));
    }
    let values = (0..n)
        .flat_map(|t| channels.iter().map(move |v| v[t]))
        .collect();
    Ok(Sequence { values, label })
}

/// One value; `?`, NaN and the infinities are refused where they stand.
fn value(v: &str, (no, channel, i): (usize, usize, usize)) -> Result<f32, String> {
    let at = format!("line {no}, channel {channel}, value {i}");
    if v.is_empty() {
        return Err(format!(
            "{at} is empty (a sequence of no steps, or two commas)"
        ));
    }
    match v.parse::<f32>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) | Err(_) if v == "?" || v.eq_ignore_ascii_case("nan") => Err(format!(
            "{at} is missing (`{v}`): unroll fills in no values; fill or drop them (e.g. with \
             aeon's imputers) and write the file again"
        )),
        Ok(_) => Err(format!("{at} is `{v}`, not a finite number")),
        Err(_) => Err(format!("{at}: `{v}` is not a number")),
    }
}

/// The header's length promises against the sequences.
fn check_lengths(set: &LabelledSet, header: &Header) -> Result<(), String> {
    if set.sequences.is_empty() {
        return Err("the @data section holds no sequence".into());
    }
    let c = set.channels;
    let first = set.sequences[0].len(c);
    let equal = header.equal_length == Some(true) || header.series_length.is_some();
    if equal
        && let Some((i, s)) = set
            .sequences
            .iter()
            .enumerate()
            .find(|(_, s)| s.len(c) != first)
    {
        return Err(format!(
            "sequence {} has {} steps and sequence 1 has {first}, and the header says \
             @equalLength true",
            i + 1,
            s.len(c)
        ));
    }
    if let Some(n) = header.series_length.filter(|&n| n != first) {
        return Err(format!(
            "the sequences have {first} steps, and the header says @seriesLength {n}"
        ));
    }
    Ok(())
}
