//! Text data: the vocabulary, reading a corpus, the built-in corpus, and char-rnn's batching.
//!
//! Batching: the training tokens are cut into B equal streams; chunk k of an epoch takes
//! T tokens from each stream at position k·T (inputs) and the tokens one later (targets), so the
//! hidden state at the end of a chunk is the right start for the next chunk of the same stream
//! (truncated BPTT). The state is reset at each epoch boundary.

use crate::error::{Error, Result};
use crate::model::{Inputs, Targets};
use rand::{RngExt, SeedableRng};
use std::io::Read;
use std::path::Path;

/// How text becomes tokens.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vocab {
    /// The distinct characters of the corpus, sorted.
    Chars(Vec<char>),
    /// The 256 byte values.
    Bytes,
}

impl Vocab {
    /// The distinct characters of `text`, sorted.
    pub fn from_text(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab::Chars(chars)
    }

    /// Checks a vocabulary read from a file: its characters sorted and distinct (so that each
    /// has one token), as [`Vocab::from_text`] makes them.
    pub fn validate(&self) -> Result<()> {
        let Vocab::Chars(chars) = self else {
            return Ok(());
        };
        match chars.windows(2).find(|w| w[0] >= w[1]) {
            None if !chars.is_empty() => Ok(()),
            None => Err(Error::config(
                "the vocabulary is empty",
                "use a checkpoint that unroll wrote, unmodified",
            )),
            Some(w) => Err(Error::config(
                if w[0] == w[1] {
                    format!("the character {:?} appears twice", w[0])
                } else {
                    format!("the characters {:?} and {:?} are out of order", w[0], w[1])
                },
                "use a checkpoint that unroll wrote, unmodified (its characters sorted, each once)",
            )),
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            Vocab::Chars(c) => c.len(),
            Vocab::Bytes => 256,
        }
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tokens of a text. A character outside the vocabulary is an error naming it.
    pub fn encode(&self, text: &[u8]) -> Result<Vec<u32>> {
        match self {
            Vocab::Bytes => Ok(text.iter().map(|&b| b as u32).collect()),
            Vocab::Chars(chars) => {
                let text = std::str::from_utf8(text).map_err(|e| {
                    Error::config(
                        format!("the text is not valid UTF-8 at byte {}", e.valid_up_to()),
                        "use --bytes to train on raw bytes, or convert the file to UTF-8",
                    )
                })?;
                text.chars()
                    .map(|ch| {
                        chars.binary_search(&ch).map(|i| i as u32).map_err(|_| {
                            Error::config(
                                format!("the character {ch:?} is not in the model's vocabulary of {} characters", chars.len()),
                                "use text made of the characters the model was trained on",
                            )
                        })
                    })
                    .collect()
            }
        }
    }

    /// The text of some tokens.
    pub fn decode(&self, tokens: &[u32]) -> String {
        match self {
            Vocab::Bytes => {
                String::from_utf8_lossy(&tokens.iter().map(|&t| t as u8).collect::<Vec<u8>>())
                    .into_owned()
            }
            Vocab::Chars(chars) => tokens.iter().map(|&t| chars[t as usize]).collect(),
        }
    }

    /// The token of a character, if it has one.
    pub fn token(&self, ch: char) -> Option<u32> {
        match self {
            Vocab::Bytes => ch.is_ascii().then_some(ch as u32),
            Vocab::Chars(chars) => chars.binary_search(&ch).ok().map(|i| i as u32),
        }
    }
}

/// Host bytes a run holds per byte of its data file, at most: the text (1), its tokens (4), the
/// training and validation parts (4), the streams (4) and the validation chunks; for a CSV, the
/// cells in f64 (up to 4 per byte), normalised (4) and the streams' copies (8).
pub const DATA_BYTES_PER_BYTE: u64 = 32;

/// The most bytes `--data` may hold unless `--max-bytes` says otherwise: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Reads a data file of at most `max_bytes`, with an error for each way it can be unusable. Only
/// regular files are read: a FIFO, a device or a socket is refused before it is opened (reading
/// one may never end).
pub fn read_data(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::file(path, "no such file; pass an existing file to --data")
        }
        _ => Error::file(path, format!("cannot read: {e}")),
    })?;
    if meta.is_dir() {
        return Err(Error::file(path, "is a directory; pass a file to --data"));
    }
    if !meta.is_file() {
        return Err(Error::file(
            path,
            "is not a regular file (a pipe, a device or a socket); save the data to a file and pass that",
        ));
    }
    let too_big = |size: u64| {
        Error::file(
            path,
            format!(
                "holds {size} bytes or more, more than the limit of {max_bytes}\n  hint: pass a \
                 larger --max-bytes if the machine has the memory for it"
            ),
        )
    };
    if meta.len() > max_bytes {
        return Err(too_big(meta.len()));
    }
    crate::footprint::check_bytes(
        &format!("reading {} and what is made of it", path.display()),
        meta.len().saturating_mul(DATA_BYTES_PER_BYTE),
        "use a smaller file, or a machine with more memory",
    )?;
    let file =
        std::fs::File::open(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow while it is read: read one byte past the limit at most.
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64));
    }
    if bytes.is_empty() {
        return Err(Error::file(path, "is empty; there is nothing to train on"));
    }
    Ok(bytes)
}

/// Reads a text file of at most [`DEFAULT_MAX_BYTES`] (see [`read_data`]).
pub fn read_text(path: &Path) -> Result<Vec<u8>> {
    read_data(path, DEFAULT_MAX_BYTES)
}

/// A corpus split into training and validation tokens.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The vocabulary.
    pub vocab: Vocab,
    /// The first part of the text.
    pub train: Vec<u32>,
    /// The held-out tail.
    pub val: Vec<u32>,
}

impl Corpus {
    /// Tokenizes `text` with `vocab` (or a vocabulary made from the text) and holds out the last
    /// `val_fraction` of it for validation.
    pub fn new(text: &[u8], vocab: Option<Vocab>, bytes: bool, val_fraction: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&val_fraction) || !val_fraction.is_finite() {
            return Err(Error::config(
                format!("validation fraction {val_fraction} is not in [0, 1)"),
                "pass --val-fraction between 0 and 1, e.g. 0.1",
            ));
        }
        let vocab = match vocab {
            Some(v) => v,
            None if bytes => Vocab::Bytes,
            None => {
                let s = std::str::from_utf8(text).map_err(|e| {
                    Error::config(
                        format!("the text is not valid UTF-8 at byte {}", e.valid_up_to()),
                        "use --bytes to train on raw bytes, or convert the file to UTF-8",
                    )
                })?;
                Vocab::from_text(s)
            }
        };
        let tokens = vocab.encode(text)?;
        let n_val = (tokens.len() as f64 * val_fraction) as usize;
        let (train, val) = tokens.split_at(tokens.len() - n_val);
        Ok(Self {
            vocab,
            train: train.to_vec(),
            val: val.to_vec(),
        })
    }

    /// How often each token occurs in the training part.
    pub fn unigram_counts(&self) -> Vec<f64> {
        let mut counts = vec![0f64; self.vocab.len()];
        for &t in &self.train {
            counts[t as usize] += 1.0;
        }
        counts
    }

    /// The entropy of the training tokens' unigram distribution, in nats: the loss of a model
    /// that knows only the character frequencies.
    pub fn unigram_entropy(&self) -> f64 {
        let n = self.train.len() as f64;
        self.unigram_counts()
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| {
                let p = c / n;
                -p * p.ln()
            })
            .sum()
    }
}

/// B parallel streams through a token sequence, read in chunks of T.
#[derive(Clone, Debug)]
pub struct Streams {
    /// B.
    pub batch: usize,
    /// T.
    pub steps: usize,
    /// Tokens per stream.
    pub stream_len: usize,
    tokens: Vec<u32>,
}

impl Streams {
    /// Cuts `tokens` into `batch` streams. Each stream needs at least T+1 tokens.
    pub fn new(tokens: &[u32], batch: usize, steps: usize, what: &str) -> Result<Self> {
        if batch == 0 || steps == 0 {
            return Err(Error::config(
                format!("batch size {batch} and sequence length {steps}: both must be at least 1"),
                "pass --batch and --seq-len of 1 or more",
            ));
        }
        let stream_len = tokens.len() / batch;
        if stream_len < steps + 1 {
            return Err(Error::config(
                format!(
                    "the {what} text has {} tokens: too short for {batch} streams of {} (batch × (seq-len + 1))",
                    tokens.len(),
                    steps + 1
                ),
                format!(
                    "use a longer text, or a smaller --batch or --seq-len (at most {} streams fit)",
                    tokens.len() / (steps + 1)
                ),
            ));
        }
        Ok(Self {
            batch,
            steps,
            stream_len,
            tokens: tokens.to_vec(),
        })
    }

    /// Chunks in one pass over the streams.
    pub fn chunks_per_epoch(&self) -> usize {
        (self.stream_len - 1) / self.steps
    }

    /// Chunk k: inputs and targets, time-major (T, B).
    pub fn chunk(&self, k: usize) -> (Inputs, Targets) {
        let (nb, nt) = (self.batch, self.steps);
        let mut x = vec![0u32; nt * nb];
        let mut y = vec![0u32; nt * nb];
        for b in 0..nb {
            let start = b * self.stream_len + k * nt;
            for t in 0..nt {
                x[t * nb + b] = self.tokens[start + t];
                y[t * nb + b] = self.tokens[start + t + 1];
            }
        }
        (Inputs::Tokens(x), Targets::Tokens(y))
    }

    /// Where each stream's next chunk starts, in tokens from the start of the text.
    pub fn positions(&self, k: usize) -> Vec<u64> {
        (0..self.batch)
            .map(|b| (b * self.stream_len + k * self.steps) as u64)
            .collect()
    }
}

/// The built-in corpus: lines of integer arithmetic, `a+b=c` and `a-b=c` with a, b below 100,
/// every answer right. Deterministic for a seed. The structure a model can learn and a test can
/// count: digits, one operator, `=`, digits, newline; and, harder, the right answer.
pub fn builtin_corpus(lines: usize, seed: u64) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut s = String::with_capacity(lines * 9);
    for _ in 0..lines {
        let a: i32 = rng.random_range(0..100);
        let b: i32 = rng.random_range(0..100);
        if rng.random_bool(0.5) {
            s.push_str(&format!("{a}+{b}={}\n", a + b));
        } else {
            let (a, b) = (a.max(b), a.min(b));
            s.push_str(&format!("{a}-{b}={}\n", a - b));
        }
    }
    s
}

/// How much of a sample follows the built-in corpus's structure, over its complete lines
/// (the first and last, possibly cut, are left out): (well-formed fraction, correct fraction).
pub fn arithmetic_score(sample: &str) -> (f64, f64) {
    let (lines, well_formed, correct) = arithmetic_counts(sample);
    let n = lines.max(1) as f64;
    (well_formed as f64 / n, correct as f64 / n)
}

/// The complete lines of a sample (the first and last, possibly cut, left out), how many of them
/// are equations of the built-in corpus's form (`a+b=c`, `a-b=c`, numbers of one to three
/// digits), and how many of those are right.
pub fn arithmetic_counts(sample: &str) -> (usize, usize, usize) {
    let lines: Vec<&str> = sample.split('\n').collect();
    if lines.len() < 3 {
        return (0, 0, 0);
    }
    let inner = &lines[1..lines.len() - 1];
    let mut well_formed = 0;
    let mut correct = 0;
    for line in inner {
        if let Some((lhs, rhs)) = line.split_once('=') {
            let op = lhs.find(['+', '-']);
            let number = |s: &str| {
                (!s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse::<i32>().unwrap())
            };
            if let Some(i) = op
                && let (Some(a), Some(b), Some(c)) =
                    (number(&lhs[..i]), number(&lhs[i + 1..]), number(rhs))
            {
                well_formed += 1;
                let want = if lhs.as_bytes()[i] == b'+' {
                    a + b
                } else {
                    a - b
                };
                if want == c {
                    correct += 1;
                }
            }
        }
    }
    (inner.len(), well_formed, correct)
}
