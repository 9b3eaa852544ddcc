//! Significance tests for comparing two groups of requests (the variants
//! of an experiment): the two-proportion z-test (success rates, positive
//! ratings), the Mann-Whitney U test with the normal approximation and tie
//! correction (latency, whose distribution has a long tail no mean
//! describes), and Welch's t interval for a difference of means (cost per
//! request, where "how much cheaper" matters more than a rank).
//!
//! Pure arithmetic on plain numbers. Every test answers `None` where it is
//! undefined (an empty group, no variance at all), so callers say "not
//! enough data" rather than print a NaN.

/// A test statistic and its two-sided p-value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Test {
    /// z for the normal tests, t for Welch's.
    pub statistic: f64,
    pub p: f64,
}

/// The two-proportion z-test (pooled variance, two-sided): are `x1` of
/// `n1` and `x2` of `n2` the same rate? `None` when a group is empty or
/// the pooled rate is 0 or 1 (no variance: nothing to test).
pub fn two_proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Test> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    let (x1, n1, x2, n2) = (x1 as f64, n1 as f64, x2 as f64, n2 as f64);
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return None;
    }
    let z = (x2 / n2 - x1 / n1) / se;
    Some(Test {
        statistic: z,
        p: two_sided_normal(z),
    })
}

/// The Mann-Whitney U test of `a` against `b`: the normal approximation
/// with the tie correction and a continuity correction of one half, as
/// scipy's `mannwhitneyu(method="asymptotic")` computes it. The statistic
/// is z signed so that a positive value means `b` tends to be larger.
/// `None` when a group is empty or every value is the same.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<Test> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|v| (*v, false))
        .chain(b.iter().map(|v| (*v, true)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let (mut rank_a, mut ties) = (0.0_f64, 0.0_f64);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks are 1-based; a run of ties shares their mean.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_a += rank * all[i..=j].iter().filter(|(_, in_b)| !in_b).count() as f64;
        i = j + 1;
    }
    let (n1, n2, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = rank_a - n1 * (n1 + 1.0) / 2.0;
    let u2 = n1 * n2 - u1;
    let mu = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((nf + 1.0) - ties / (nf * (nf - 1.0)));
    if var <= 0.0 || !var.is_finite() {
        return None;
    }
    let z = (u1.max(u2) - mu - 0.5) / var.sqrt();
    let p = (2.0 * upper_normal(z)).min(1.0);
    // u2 large means b's values rank above a's.
    let signed = if u2 >= u1 { z.max(0.0) } else { -z.max(0.0) };
    Some(Test {
        statistic: signed,
        p,
    })
}

/// Welch's comparison of two means: `b`'s mean minus `a`'s, its 95%
/// confidence interval and the two-sided p-value of a difference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeanDifference {
    pub difference: f64,
    /// Half the width of the 95% interval: the difference is
    /// `difference ± margin`.
    pub margin: f64,
    pub degrees_of_freedom: f64,
    pub test: Test,
}

/// Welch's t-test and interval for `mean(b) - mean(a)`. `None` with fewer
/// than two values in a group. When neither group varies the difference
/// is exact: margin 0, p 0 (or 1 for no difference).
pub fn welch(a: &[f64], b: &[f64]) -> Option<MeanDifference> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (ma, va) = mean_var(a);
    let (mb, vb) = mean_var(b);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let difference = mb - ma;
    let (sa, sb) = (va / na, vb / nb);
    let se2 = sa + sb;
    if se2 <= 0.0 {
        let p = if difference == 0.0 { 1.0 } else { 0.0 };
        return Some(MeanDifference {
            difference,
            margin: 0.0,
            degrees_of_freedom: na + nb - 2.0,
            test: Test {
                statistic: if difference == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                },
                p,
            },
        });
    }
    let df = se2 * se2 / (sa * sa / (na - 1.0) + sb * sb / (nb - 1.0));
    let se = se2.sqrt();
    let t = difference / se;
    Some(MeanDifference {
        difference,
        margin: t_quantile(0.975, df) * se,
        degrees_of_freedom: df,
        test: Test {
            statistic: t,
            p: (2.0 * t_upper(t.abs(), df)).min(1.0),
        },
    })
}

/// The mean and the sample variance (n - 1).
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let ss: f64 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, ss / (n - 1.0))
}

/// P(Z > z) for a standard normal Z.
pub fn upper_normal(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

fn two_sided_normal(z: f64) -> f64 {
    (2.0 * upper_normal(z.abs())).min(1.0)
}

/// The complementary error function, to about 1e-15 relative: W. J. Cody's
/// rational approximations (Math. Comp. 23, 1969), in the form of Sun's
/// fdlibm `s_erf.c`.
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 0.5 {
        return 1.0 - erf_small(x);
    }
    if x > 27.0 {
        return 0.0;
    }
    // Continued fraction of Lentz's method converges fast for x >= 0.5:
    // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))).
    let mut f = x;
    let (mut c, mut d) = (x, 0.0_f64);
    for k in 1..500 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        d = if d == 0.0 { 1e-300 } else { 1.0 / d };
        c = x + a / c;
        if c == 0.0 {
            c = 1e-300;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// erf(x) for small x by its Maclaurin series.
fn erf_small(x: f64) -> f64 {
    let (mut sum, mut term) = (x, x);
    for n in 1..60 {
        let n = n as f64;
        term *= -x * x / n;
        let add = term / (2.0 * n + 1.0);
        sum += add;
        if add.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// P(T > t) for Student's t with `df` degrees of freedom (t >= 0).
fn t_upper(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    let x = df / (df + t * t);
    0.5 * incomplete_beta(df / 2.0, 0.5, x)
}

/// The `q` quantile of Student's t (0.5 < q < 1), by bisection on
/// [`t_upper`]: enough for an interval's margin.
fn t_quantile(q: f64, df: f64) -> f64 {
    let target = 1.0 - q;
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while t_upper(hi, df) > target && hi < 1e6 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if t_upper(mid, df) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The regularised incomplete beta function I_x(a, b), by its continued
/// fraction (modified Lentz), using the symmetry for faster convergence.
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..1000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { 1.0 / TINY } else { 1.0 / d };
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { 1.0 / TINY } else { 1.0 / d };
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0: the Lanczos approximation (g = 7, 9 terms), good to
/// about 1e-15.
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        sum += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    //! Expected values computed independently with scipy 1.17.1 (numpy
    //! 2.4.6) in a scratch virtualenv: `stats.norm.sf`, `stats.t.ppf`,
    //! `stats.mannwhitneyu(x, y, method="asymptotic", use_continuity=True)`,
    //! `stats.ttest_ind(b, a, equal_var=False)` and its
    //! `confidence_interval(0.95)`; the pooled z of the two-proportion test
    //! by its formula, whose square is the uncorrected chi-square of the
    //! 2x2 table (`stats.chi2_contingency(.., correction=False)` gives the
    //! same p, 0.033672068856345896).
    use super::*;

    fn close(got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol * want.abs().max(1e-300),
            "got {got}, want {want}"
        );
    }

    #[test]
    fn the_normal_tail() {
        close(upper_normal(1.959963984540054), 0.025, 1e-12);
        close(upper_normal(3.0), 0.0013498980316300933, 1e-12);
        close(upper_normal(0.3), 0.3820885778110474, 1e-12);
        close(upper_normal(-0.3), 1.0 - 0.3820885778110474, 1e-12);
    }

    #[test]
    fn t_quantiles() {
        close(t_quantile(0.975, 7.5), 2.333039626864974, 1e-9);
        close(t_quantile(0.975, 1000.0), 1.9623390808264083, 1e-9);
    }

    #[test]
    fn two_proportions_against_the_chi_square() {
        let t = two_proportions(45, 100, 60, 100).unwrap();
        close(t.statistic, 2.1239769762143657, 1e-12);
        close(t.p, 0.033672068856345855, 1e-10);
        let t = two_proportions(910, 1000, 970, 1000).unwrap();
        close(t.statistic, 5.649326828660312, 1e-12);
        close(t.p, 1.610773562568592e-08, 1e-8);
        assert!(two_proportions(0, 0, 1, 2).is_none());
        assert!(two_proportions(5, 5, 7, 7).is_none(), "no variance");
    }

    #[test]
    fn mann_whitney_without_and_with_ties() {
        let a = [19.0, 22.0, 16.0, 29.0, 24.0];
        let b = [20.0, 11.0, 17.0, 12.0];
        // scipy's U for `a` is 17; ours is the same p.
        let t = mann_whitney(&a, &b).unwrap();
        close(t.p, 0.11134688653314041, 1e-10);
        assert!(t.statistic < 0.0, "b tends to be smaller");
        let a = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 4.0, 5.0];
        let b = [3.0, 4.0, 4.0, 5.0, 5.0, 6.0, 7.0, 7.0, 8.0];
        let t = mann_whitney(&a, &b).unwrap();
        close(t.p, 0.006373133838085873, 1e-10);
        assert!(t.statistic > 0.0, "b tends to be larger");
        assert!(mann_whitney(&[1.0, 1.0], &[1.0]).is_none());
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }

    #[test]
    fn welch_interval_and_p() {
        let a = [
            27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7,
            21.4,
        ];
        let b = [
            27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5,
            24.4,
        ];
        let d = welch(&a, &b).unwrap();
        close(d.difference, 2.166666666666668, 1e-12);
        close(d.test.statistic, 2.455356398286006, 1e-10);
        close(d.test.p, 0.021378001462866992, 1e-8);
        close(d.degrees_of_freedom, 24.988529290231416, 1e-10);
        close(d.difference - d.margin, 0.3492370661924069, 1e-8);
        close(d.difference + d.margin, 3.984096267140929, 1e-8);
        let d = welch(
            &[10.0, 12.0, 11.0, 13.0, 9.0],
            &[7.0, 8.0, 6.0, 9.0, 7.0, 8.0],
        )
        .unwrap();
        close(d.test.statistic, -4.234008652363937, 1e-10);
        close(d.test.p, 0.004206360739594184, 1e-8);
        close(d.degrees_of_freedom, 6.745585874799358, 1e-10);
        close(d.difference - d.margin, -5.469737123179701, 1e-8);
        close(d.difference + d.margin, -1.530262876820299, 1e-8);
    }

    #[test]
    fn welch_without_variance_is_exact() {
        let d = welch(&[2.0, 2.0], &[1.0, 1.0, 1.0]).unwrap();
        assert_eq!((d.difference, d.margin, d.test.p), (-1.0, 0.0, 0.0));
        assert_eq!(welch(&[2.0, 2.0], &[2.0, 2.0]).unwrap().test.p, 1.0);
        assert!(welch(&[2.0], &[2.0, 3.0]).is_none());
    }
}
