//! Function calls: dispatch, and the functions over instant vectors and scalars (math, `round`,
//! `clamp*`, `time`, the date functions, `vector`, `scalar`, `timestamp`, `sort*`, `label_replace`,
//! `label_join`, `absent`);
//! `histogram_quantile` lives in `histogram`.

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};

use super::eval::{exec, merge_series, unsupported, Ctx, Series, Val};
use super::range_fns::{eval_range_fn, is_range_fn};
use super::{unwrap_parens, QueryError};
use crate::model::{LabelSet, METRIC_NAME};

fn arg<'e>(args: &'e [Box<Expr>], i: usize, name: &str) -> Result<&'e Expr, QueryError> {
    args.get(i).map(|b| b.as_ref()).ok_or_else(|| exec(format!("too few arguments to {name}()")))
}

/// Go's math.Max: +Inf wins over NaN, NaN over everything else, +0 over -0.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            y
        } else {
            x
        }
    } else if x > y {
        x
    } else {
        y
    }
}

/// Go's math.Min: -Inf wins over NaN, NaN over everything else, -0 over +0.
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else if x == 0.0 && y == 0.0 {
        if x.is_sign_negative() {
            x
        } else {
            y
        }
    } else if x < y {
        x
    } else {
        y
    }
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v| v * 180.0 / std::f64::consts::PI,
        "rad" => |v| v * std::f64::consts::PI / 180.0,
        "sgn" => |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        _ => return None,
    })
}

pub(crate) fn eval_call(ctx: &Ctx, c: &Call) -> Result<Val, QueryError> {
    let name = c.func.name;
    let args = &c.args.args;
    if is_range_fn(name) {
        return eval_range_fn(ctx, name, args);
    }
    match name {
        "time" => Ok(Val::Scalar((0..ctx.n).map(|i| ctx.ts(i) as f64 / 1000.0).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; ctx.n])),
        "vector" => {
            let v = ctx.eval_scalar(arg(args, 0, name)?)?;
            Ok(Val::Vector(vec![Series::new(LabelSet::default(), v.into_iter().map(Some).collect())]))
        }
        "scalar" => {
            let input = ctx.eval_vector(arg(args, 0, name)?)?;
            Ok(Val::Scalar(
                (0..ctx.n)
                    .map(|i| {
                        let mut present = input.iter().filter_map(|s| s.vals[i]);
                        match (present.next(), present.next()) {
                            (Some(v), None) => v,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "timestamp" => {
            let a = arg(args, 0, name)?;
            if let Expr::VectorSelector(vs) = unwrap_parens(a) {
                // A selector's own sample times, not the evaluation time.
                return Ok(Val::Vector(ctx.vector_selector(vs, true)?));
            }
            let input = ctx.eval_vector(a)?;
            let out = input
                .into_iter()
                .map(|s| {
                    let vals = s.vals.iter().enumerate().map(|(i, v)| v.map(|_| ctx.ts(i) as f64 / 1000.0)).collect();
                    ctx.unnamed(s.labels, vals)
                })
                .collect();
            Ok(Val::Vector(merge_series(out, false)?))
        }
        // Ordering only matters for an instant query's output, which `Engine::instant` sorts.
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            for a in args.iter().skip(1) {
                ctx.eval_string(a)?;
            }
            Ok(Val::Vector(ctx.eval_vector(arg(args, 0, name)?)?))
        }
        "histogram_quantile" => super::histogram::histogram_quantile(ctx, args),
        "label_replace" => label_replace(ctx, args),
        "label_join" => label_join(ctx, args),
        "absent" => {
            let a = arg(args, 0, name)?;
            let input = ctx.eval_vector(a)?;
            let vals = (0..ctx.n).map(|i| (!input.iter().any(|s| s.vals[i].is_some())).then_some(1.0)).collect();
            Ok(Val::Vector(merge_series(vec![Series::new(absent_labels(a), vals)], false)?))
        }
        "round" => {
            let input = ctx.eval_vector(arg(args, 0, name)?)?;
            let to = match args.get(1) {
                Some(e) => ctx.eval_scalar(e)?,
                None => vec![1.0; ctx.n],
            };
            map_values(ctx, input, |i, v| {
                let inv = 1.0 / to[i];
                Some((v * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let input = ctx.eval_vector(arg(args, 0, name)?)?;
            let lo = ctx.eval_scalar(arg(args, 1, name)?)?;
            let hi = ctx.eval_scalar(arg(args, 2, name)?)?;
            map_values(ctx, input, |i, v| {
                (hi[i] >= lo[i] || hi[i].is_nan() || lo[i].is_nan()).then(|| go_max(lo[i], go_min(hi[i], v)))
            })
        }
        "clamp_min" => {
            let input = ctx.eval_vector(arg(args, 0, name)?)?;
            let lo = ctx.eval_scalar(arg(args, 1, name)?)?;
            map_values(ctx, input, |i, v| Some(go_max(v, lo[i])))
        }
        "clamp_max" => {
            let input = ctx.eval_vector(arg(args, 0, name)?)?;
            let hi = ctx.eval_scalar(arg(args, 1, name)?)?;
            map_values(ctx, input, |i, v| Some(go_min(v, hi[i])))
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" => {
            // Without an argument: the evaluation time, as `vector(time())`.
            let input = match args.first() {
                Some(a) => ctx.eval_vector(a)?,
                None => {
                    let now = (0..ctx.n).map(|i| Some(ctx.ts(i) as f64 / 1000.0)).collect();
                    vec![Series::new(LabelSet::default(), now)]
                }
            };
            map_values(ctx, input, |_, v| Some(date_part(name, v)))
        }
        _ => match math_fn(name) {
            Some(f) => map_values(ctx, ctx.eval_vector(arg(args, 0, name)?)?, |_, v| Some(f(v))),
            None => Err(unsupported(format!("function \"{name}\" is not supported yet"))),
        },
    }
}

/// One field of the UTC date and time `v` (Unix seconds) names, as Prometheus's date functions give
/// it; NaN for a value that is no time.
fn date_part(name: &str, v: f64) -> f64 {
    if !v.is_finite() || v.abs() > 1e15 {
        return f64::NAN;
    }
    let secs = v.trunc() as i64;
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][month as usize - 1];
    let r = match name {
        "year" => year,
        "month" => month,
        "day_of_month" => day,
        // 1970-01-01 was a Thursday (4); Sunday is 0.
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_year" => before + day + i64::from(leap && month > 2),
        "days_in_month" => [31, 28 + i64::from(leap), 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1],
        "hour" => of_day / 3600,
        "minute" => of_day % 3600 / 60,
        _ => unreachable!("not a date function: {name}"),
    };
    r as f64
}

/// The proleptic Gregorian (year, month 1..=12, day 1..=31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Applies `f(step, value)` to every point, dropping the metric name as Prometheus's functions do.
fn map_values(ctx: &Ctx, input: Vec<Series>, f: impl Fn(usize, f64) -> Option<f64>) -> Result<Val, QueryError> {
    let out = input
        .into_iter()
        .map(|s| {
            let vals = s.vals.iter().enumerate().map(|(i, v)| v.and_then(|v| f(i, v))).collect();
            ctx.unnamed(s.labels, vals)
        })
        .collect();
    Ok(Val::Vector(merge_series(out, false)?))
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: the names label_replace and label_join may write (Prometheus 3 checks
/// their destination against this, whatever its name validation scheme).
fn legacy_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_') && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn label_replace(ctx: &Ctx, args: &[Box<Expr>]) -> Result<Val, QueryError> {
    let name = "label_replace";
    let dst = ctx.eval_string(arg(args, 1, name)?)?;
    let repl = ctx.eval_string(arg(args, 2, name)?)?;
    let src = ctx.eval_string(arg(args, 3, name)?)?;
    let re_str = ctx.eval_string(arg(args, 4, name)?)?;
    let re = regex::Regex::new(&format!("^(?s:{re_str})$"))
        .map_err(|_| exec(format!("invalid regular expression in label_replace(): {re_str}")))?;
    if !legacy_label_name(&dst) {
        return Err(exec(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let mut input = ctx.eval_vector(arg(args, 0, name)?)?;
    for s in &mut input {
        let src_val = s.labels.get(&src).unwrap_or("").to_string();
        if let Some(caps) = re.captures(&src_val) {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            s.labels.set(&dst, &res);
            // Writing the name keeps it: it is the series' name now.
            s.drop_name &= dst != METRIC_NAME;
        }
    }
    Ok(Val::Vector(merge_series(input, true)?))
}

fn label_join(ctx: &Ctx, args: &[Box<Expr>]) -> Result<Val, QueryError> {
    let name = "label_join";
    let dst = ctx.eval_string(arg(args, 1, name)?)?;
    let sep = ctx.eval_string(arg(args, 2, name)?)?;
    let srcs = args[3.min(args.len())..].iter().map(|a| ctx.eval_string(a)).collect::<Result<Vec<_>, _>>()?;
    if !legacy_label_name(&dst) {
        return Err(exec(format!("invalid destination label name in label_join(): {dst}")));
    }
    if let Some(bad) = srcs.iter().find(|s| s.is_empty()) {
        return Err(exec(format!("invalid source label name in label_join(): {bad}")));
    }
    let mut input = ctx.eval_vector(arg(args, 0, name)?)?;
    for s in &mut input {
        let joined = srcs.iter().map(|l| s.labels.get(l).unwrap_or("")).collect::<Vec<_>>().join(&sep);
        s.labels.set(&dst, &joined);
        s.drop_name &= dst != METRIC_NAME;
    }
    Ok(Val::Vector(merge_series(input, true)?))
}

/// The labels `absent()` and `absent_over_time()` give their output: the selector's equality matchers,
/// except a label matched more than once or not by equality (Prometheus's historic rule).
pub(crate) fn absent_labels(e: &Expr) -> LabelSet {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return LabelSet::default(),
    };
    let mut out = LabelSet::default();
    let mut has: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == crate::model::METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.contains(&m.name.as_str()) {
            out.set(&m.name, &m.value);
            has.push(&m.name);
        } else {
            out.remove(&m.name);
        }
    }
    out
}
