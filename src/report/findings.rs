//! The six findings in order: each hypothesis' verdict from the state it reads, then the
//! load balancer's evidence added to them. The one place that calls every verdict. Pure.

use super::analyze::Analyzer;
use super::verdict::Finding;
use super::{h2, lb_verdict};

/// All six verdicts.
pub fn all(a: &Analyzer) -> Vec<Finding> {
    let moved = a.sessions.moved(&a.pods);
    let mut findings = vec![
        a.h1.verdict(&a.pods),
        h2::verdict(&a.pods, &a.sessions, &moved),
        a.h3.verdict(&a.pods),
        a.h4.verdict(),
        a.h5.verdict(&a.pods, &moved),
        a.h6.verdict(&a.pods, &moved),
    ];
    lb_verdict::amend(&mut findings, a);
    findings
}
