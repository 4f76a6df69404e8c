//! A recording's odometry topic (nav_msgs/Odometry) for `evaluate --bag ... --filter sequence
//! --odometry-topic TOPIC`: the positions the node's `odometry_topic` would have received, so
//! that `evaluate` scores the filter with the recording's odometry as the node runs it.

use std::path::Path;

use r2r::WrappedTypesupport;

use super::reader::Bag;
use super::BagError;
use crate::localize::odometry::RecordedOdometry;

pub const ODOMETRY: &str = "nav_msgs/msg/Odometry";

/// The messages of `topic` in `bag` (path as the user gave it): stamp (header.stamp, seconds)
/// and position (pose.pose.position, metres, in the message's header.frame_id), in stamp order
/// (those recorded out of it are counted). Messages stamped 0 or not decodable are left out and counted (the node
/// drops the first and cannot read the second); a topic that is missing, of another type, or
/// with no message left is an error naming the recording and the topic.
pub fn read(path: &Path, topic: &str) -> Result<RecordedOdometry, BagError> {
    let bag = Bag::open(path)?;
    let option = "--odometry-topic".to_string();
    match bag.topic(topic) {
        None => {
            return Err(BagError::UnknownTopic {
                path: bag.path.clone(),
                option,
                topic: topic.to_string(),
                candidates: bag.topic_list(&|ty| ty == ODOMETRY),
                all: bag.topic_list(&|_| true),
            });
        }
        Some(t) if t.ty != ODOMETRY => {
            return Err(BagError::WrongType {
                path: bag.path.clone(),
                option,
                topic: topic.to_string(),
                found: t.ty.clone(),
                expected: ODOMETRY.to_string(),
            })
        }
        Some(_) => {}
    }
    let mut out = RecordedOdometry {
        topic: topic.to_string(),
        ..Default::default()
    };
    let mut first_bad: Option<String> = None;
    let mut messages = 0u64;
    bag.read(&[topic], |r| {
        messages += 1;
        match r2r::nav_msgs::msg::Odometry::from_serialized_bytes(r.data) {
            Ok(m) if m.header.stamp.sec != 0 || m.header.stamp.nanosec != 0 => {
                let p = m.pose.pose.position;
                let t = m.header.stamp.sec as f64 + m.header.stamp.nanosec as f64 * 1e-9;
                out.samples.push((t, [p.x, p.y, p.z]));
            }
            Ok(_) => {
                out.left_out += 1;
                first_bad.get_or_insert_with(|| {
                    format!("message {} is stamped 0 (header.stamp)", r.index)
                });
            }
            Err(e) => {
                out.left_out += 1;
                first_bad.get_or_insert_with(|| {
                    format!(
                        "message {} cannot be deserialized as {ODOMETRY}: {e}",
                        r.index
                    )
                });
            }
        }
        Ok(())
    })?;
    let mut newest = f64::NEG_INFINITY;
    for s in &out.samples {
        out.out_of_order += u64::from(s.0 < newest);
        newest = newest.max(s.0);
    }
    out.samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    if out.samples.is_empty() {
        return Err(BagError::Option {
            field: format!("--odometry-topic {topic}"),
            expected: format!("{ODOMETRY} messages with a stamp in {}", bag.path.display()),
            found: match first_bad {
                Some(why) => format!("{messages} message(s), none usable ({why})"),
                None => "no message".to_string(),
            },
        });
    }
    Ok(out)
}
