//! INTERIM placeholder: spreads runs over the positions with the fewest runs.
use super::change_point::{MissingReason, Position};

#[derive(Clone, Debug)]
pub struct HuntPlanner {
    pub target_probability: f64,
}

impl Default for HuntPlanner {
    fn default() -> Self {
        HuntPlanner { target_probability: 0.95 }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum HuntOutcome {
    Found { position: usize, probability: f64 },
    NoChange { probability: f64 },
    BudgetSpent { best: Option<(usize, f64)> },
}

#[derive(Clone, Debug, PartialEq)]
pub enum HuntStep {
    Run(Vec<(usize, u64)>),
    Done(HuntOutcome),
}

impl HuntPlanner {
    pub fn step(&self, positions: &[Position], remaining: u64, batch: u64) -> HuntStep {
        if remaining == 0 {
            return HuntStep::Done(HuntOutcome::BudgetSpent { best: None });
        }
        let mut candidates: Vec<(u64, usize)> = positions
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Position::Observed { runs, .. } => Some((*runs, i)),
                Position::Missing(MissingReason::NotRun) => Some((0, i)),
                Position::Missing(_) => None,
            })
            .collect();
        candidates.sort();
        let Some((_, first)) = candidates.first() else {
            return HuntStep::Done(HuntOutcome::BudgetSpent { best: None });
        };
        HuntStep::Run(vec![(*first, batch.max(1))])
    }
}
