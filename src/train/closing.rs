//! What a run reports at its end besides its losses: the closing sample of a text model (and
//! its score on the built-in arithmetic), and a classifier's last evaluation per class.

use super::{Classified, Run, SampleScore, Task};
use crate::error::Result;
use crate::model::Params;
use crate::rundir;

impl Run {
    /// The closing sample (text), and its score where the run learnt the built-in arithmetic.
    pub(super) fn sample(&self, params: &Params<f32>) -> Result<(String, Option<SampleScore>)> {
        let (len, seed) = (self.cfg.sample_len, self.cfg.seed);
        let vocab = match (&self.data.vocab, self.cfg.task) {
            (Some(vocab), Task::Text) if len > 0 => vocab,
            _ => return Ok((String::new(), None)),
        };
        let prime = vocab.token('\n').unwrap_or(0);
        let text = vocab.decode(&crate::sample::sample(params, &[prime], len, 0.8, seed)?);
        if self.cfg.data.is_some() {
            return Ok((text, None));
        }
        let unigram = vocab.decode(&crate::sample::sample_unigram(
            &self.data.unigram,
            len,
            seed,
        ));
        let (lines, well_formed, correct) = crate::data::arithmetic_counts(&text);
        let (unigram_lines, _, unigram_correct) = crate::data::arithmetic_counts(&unigram);
        let score = SampleScore {
            lines,
            well_formed,
            correct,
            unigram_lines,
            unigram_correct,
        };
        Ok((text, Some(score)))
    }

    /// A classifier's last evaluation, written to `confusion.csv` and `per_class.csv`.
    pub(super) fn classified(&self) -> Result<Option<Classified>> {
        let (Some(score), Some(classes)) = (&self.score, &self.data.classes) else {
            return Ok(None);
        };
        let Some(accuracy) = score.accuracy else {
            return Ok(None);
        };
        let names = &classes.names;
        let files = match &self.dir {
            Some(dir) => {
                let (confusion, per_class) = crate::metrics::class_tables(names, &score.confusion);
                dir.write_atomic(rundir::CONFUSION, confusion.as_bytes())?;
                dir.write_atomic(rundir::PER_CLASS, per_class.as_bytes())?;
                Some((dir.file(rundir::CONFUSION), dir.file(rundir::PER_CLASS)))
            }
            None => None,
        };
        Ok(Some(Classified {
            classes: names.clone(),
            accuracy,
            train_accuracy: self.train_split.as_ref().and_then(|s| s.accuracy),
            confusion: score.confusion.clone(),
            files,
        }))
    }
}
