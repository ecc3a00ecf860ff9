//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2`, and the set operators,
//! between scalars and vectors, with Prometheus's vector matching (`on`, `ignoring`, `group_left/right`).

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{exec, merge_series, unsupported, Ctx, Out, Series, Val};
use super::QueryError;
use crate::model::{LabelSet, METRIC_NAME};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op, QueryError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(unsupported(format!("binary operator \"{other}\" is not supported"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Arithmetic drops the metric name; comparisons and set operators keep it.
    fn drops_name(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow | Op::Atan2)
    }
}

/// Prometheus's vectorElemBinop: the result, and for comparisons whether the element is kept (the
/// result then being the left value).
pub(crate) fn elem(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        // Go's math.Mod and Rust's % are both C's fmod: the sign of the dividend.
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, true),
    }
}

pub(crate) fn eval_binary(ctx: &Ctx, b: &BinaryExpr) -> Result<Val, QueryError> {
    let op = Op::parse(&b.op.to_string())?;
    let m = b.modifier.as_ref();
    if let Some(m) = m {
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(unsupported("the fill, fill_left and fill_right modifiers are not supported"));
        }
    }
    let return_bool = m.is_some_and(|m| m.return_bool);
    let lhs = ctx.eval(&b.lhs)?;
    let rhs = ctx.eval(&b.rhs)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.into_iter()
                .zip(r)
                .map(|(l, r)| {
                    let (v, keep) = elem(op, l, r);
                    if op.is_comparison() {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(ctx, op, l, &r, false, return_bool),
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(ctx, op, r, &l, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let (on, names) = match m.and_then(|m| m.matching.as_ref()) {
                Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
                Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
                None => (false, Vec::new()),
            };
            let matching = Matching { on, names };
            match op {
                Op::And | Op::Or | Op::Unless => set_op(ctx, op, l, r, &matching),
                _ => {
                    let card = m.map_or(VectorMatchCardinality::OneToOne, |m| m.card.clone());
                    vector_vector(ctx, op, l, r, &matching, &card, return_bool)
                }
            }
        }
        _ => Err(exec(format!("binary operator \"{}\" is not defined on strings", b.op))),
    }
}

/// A vector against a scalar at each step. `swap` means the scalar was on the left.
fn vector_scalar(
    ctx: &Ctx,
    op: Op,
    vec: Vec<Series>,
    sc: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Val, QueryError> {
    if matches!(op, Op::And | Op::Or | Op::Unless) {
        return Err(exec("set operator not allowed in binary scalar expression"));
    }
    let drop = op.drops_name() || return_bool;
    let out = vec
        .into_iter()
        .map(|s| {
            let vals = s
                .vals
                .into_iter()
                .zip(sc)
                .map(|(v, &c)| {
                    let v = v?;
                    let (l, r) = if swap { (c, v) } else { (v, c) };
                    let (mut f, keep) = elem(op, l, r);
                    // A comparison always yields the vector's value, on whichever side it is.
                    if op.is_comparison() {
                        f = v;
                    }
                    match (return_bool, keep) {
                        (true, k) => Some(if k { 1.0 } else { 0.0 }),
                        (false, true) => Some(f),
                        (false, false) => None,
                    }
                })
                .collect();
            // A comparison without `bool` keeps the series as it was, name or mark.
            if drop {
                ctx.unnamed(s.labels, vals)
            } else {
                Series { labels: s.labels, vals, drop_name: s.drop_name }
            }
        })
        .collect();
    Ok(Val::Vector(merge_series(out, false)?))
}

struct Matching {
    on: bool,
    names: Vec<String>,
}

impl Matching {
    /// The labels two series are matched on: the `on` labels, or all but `__name__` and the ignored ones.
    fn signature(&self, l: &LabelSet) -> LabelSet {
        if self.on {
            l.filtered(|k| self.names.iter().any(|n| n == k))
        } else {
            l.filtered(|k| k != METRIC_NAME && !self.names.iter().any(|n| n == k))
        }
    }
}

/// Gives each distinct signature of `a` and `b` a small number, and returns each series' number.
fn signature_ids(m: &Matching, a: &[Series], b: &[Series]) -> (Vec<usize>, Vec<usize>, Vec<LabelSet>) {
    let mut ids: HashMap<LabelSet, usize> = HashMap::new();
    let mut sigs = Vec::new();
    let mut id_of = |s: &Series| {
        let sig = m.signature(&s.labels);
        *ids.entry(sig.clone()).or_insert_with(|| {
            sigs.push(sig);
            sigs.len() - 1
        })
    };
    let ia = a.iter().map(&mut id_of).collect();
    let ib = b.iter().map(&mut id_of).collect();
    (ia, ib, sigs)
}

fn set_op(ctx: &Ctx, op: Op, l: Vec<Series>, r: Vec<Series>, m: &Matching) -> Result<Val, QueryError> {
    let (lid, rid, sigs) = signature_ids(m, &l, &r);
    let mut out = Out::new(ctx.n);
    let lout: Vec<usize> = l.iter().map(|s| out.idx_marked(s.labels.clone(), s.drop_name)).collect();
    let rout: Vec<usize> = if op == Op::Or {
        r.iter().map(|s| out.idx_marked(s.labels.clone(), s.drop_name)).collect()
    } else {
        Vec::new()
    };
    let mut seen = vec![false; sigs.len()];
    let mut touched = Vec::new();
    for i in 0..ctx.n {
        for g in touched.drain(..) {
            seen[g] = false;
        }
        // `seen` holds the signatures present at this step on the side that decides.
        let decider = if op == Op::Or { (&l, &lid) } else { (&r, &rid) };
        for (s, &g) in decider.0.iter().zip(decider.1) {
            if s.vals[i].is_some() && !seen[g] {
                seen[g] = true;
                touched.push(g);
            }
        }
        for (k, s) in l.iter().enumerate() {
            let Some(v) = s.vals[i] else { continue };
            let keep = match op {
                Op::And => seen[lid[k]],
                Op::Unless => !seen[lid[k]],
                _ => true,
            };
            if keep {
                out.put(lout[k], i, v)?;
            }
        }
        if op == Op::Or {
            for (k, s) in r.iter().enumerate() {
                if let Some(v) = s.vals[i] {
                    if !seen[rid[k]] {
                        out.put(rout[k], i, v)?;
                    }
                }
            }
        }
    }
    Ok(Val::Vector(out.finish()))
}

fn vector_vector(
    ctx: &Ctx,
    op: Op,
    l: Vec<Series>,
    r: Vec<Series>,
    m: &Matching,
    card: &VectorMatchCardinality,
    return_bool: bool,
) -> Result<Val, QueryError> {
    let (include, one_to_one, one_to_many) = match card {
        VectorMatchCardinality::OneToOne => (Vec::new(), true, false),
        VectorMatchCardinality::ManyToOne(ls) => (ls.labels.clone(), false, false),
        VectorMatchCardinality::OneToMany(ls) => (ls.labels.clone(), false, true),
        VectorMatchCardinality::ManyToMany => {
            return Err(exec("many-to-many matching is only allowed for set operators"))
        }
    };
    // `many` is the side whose labels the result keeps; `one` must be unique per signature.
    let (many, one) = if one_to_many { (r, l) } else { (l, r) };
    let (many_id, one_id, sigs) = signature_ids(m, &many, &one);
    let mut one_at: Vec<Option<usize>> = vec![None; sigs.len()];
    let mut matched: Vec<bool> = vec![false; sigs.len()];
    let mut inserted: HashSet<(usize, usize)> = HashSet::new();
    let mut touched = Vec::new();
    let mut out = Out::new(ctx.n);
    let mut result_idx: HashMap<(usize, usize), usize> = HashMap::new();
    for i in 0..ctx.n {
        for g in touched.drain(..) {
            one_at[g] = None;
            matched[g] = false;
        }
        inserted.clear();
        for (j, s) in one.iter().enumerate() {
            if s.vals[i].is_none() {
                continue;
            }
            let g = one_id[j];
            if let Some(prev) = one_at[g] {
                let side = if one_to_many { "left" } else { "right" };
                return Err(exec(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    sigs[g], s.labels, one[prev].labels
                )));
            }
            one_at[g] = Some(j);
            touched.push(g);
        }
        for (k, s) in many.iter().enumerate() {
            let Some(v) = s.vals[i] else { continue };
            let g = many_id[k];
            let Some(j) = one_at[g] else { continue };
            let w = one[j].vals[i].unwrap_or(f64::NAN);
            // The operands in their original order.
            let (fl, fr) = if one_to_many { (w, v) } else { (v, w) };
            let (mut f, keep) = elem(op, fl, fr);
            if return_bool {
                f = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let idx = *result_idx.entry((k, j)).or_insert_with(|| {
                let mut labels = result_metric(&many[k].labels, &one[j].labels, op, m, one_to_one, &include);
                // Arithmetic has dropped the name at once (`result_metric`), as Prometheus does even
                // with delayed name removal; `bool` drops it, or marks it; a plain comparison keeps
                // the series' mark. (Prometheus forgets the mark there and so brings back a name its
                // left side had dropped; without delayed removal the name is gone.)
                let mut drop_name = !return_bool && many[k].drop_name;
                if return_bool {
                    if ctx.delayed_names {
                        drop_name = true;
                    } else {
                        labels.remove(METRIC_NAME);
                    }
                }
                out.idx_marked(labels, drop_name)
            });
            if one_to_one {
                if matched[g] {
                    return Err(exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                matched[g] = true;
            } else if !inserted.insert((g, idx)) {
                return Err(exec("multiple matches for labels: grouping labels must ensure unique matches"));
            }
            out.put(idx, i, f)?;
        }
    }
    Ok(Val::Vector(out.finish()))
}

/// Prometheus's resultMetric: the many side's labels, without the name for arithmetic, reduced to the
/// matching labels for one-to-one `on`, without the ignored ones for one-to-one `ignoring`, and with the
/// `group_x(...)` labels copied from the one side.
fn result_metric(
    many: &LabelSet,
    one: &LabelSet,
    op: Op,
    m: &Matching,
    one_to_one: bool,
    include: &[String],
) -> LabelSet {
    let mut l = many.clone();
    if op.drops_name() {
        l.remove(METRIC_NAME);
    }
    if one_to_one {
        let listed = |k: &str| m.names.iter().any(|n| n == k);
        l = if m.on { l.filtered(listed) } else { l.filtered(|k| !listed(k)) };
    }
    for name in include {
        match one.get(name) {
            Some(v) => {
                let v = v.to_string();
                l.set(name, &v)
            }
            None => l.remove(name),
        }
    }
    l
}
