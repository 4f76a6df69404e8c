//! Thin helpers over r2r shared by the node and the tools (cargo feature `ros`).

use std::ffi::{c_char, CStr};

extern "C" {
    // From librmw_implementation (linked by r2r): the identifier of the RMW in use.
    fn rmw_get_implementation_identifier() -> *const c_char;
}

/// The RMW implementation the ROS 2 client library loads, e.g. `rmw_fastrtps_cpp`.
pub fn rmw_implementation_identifier() -> Option<String> {
    // SAFETY: the function takes no arguments and returns a pointer to a static NUL-terminated
    // string owned by the RMW library (or null).
    let ptr = unsafe { rmw_get_implementation_identifier() };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated and static, as documented by rmw.
    Some(
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// `name` (a topic as a parameter gives it) resolved as rcl resolves it for a node `node_name`
/// in `namespace`, before remapping: absolute names stay, `~/x` is under the node's own name,
/// others under its namespace (ROS 2 design, "Topic and Service name mapping to DDS").
pub fn resolve_name(namespace: &str, node_name: &str, name: &str) -> String {
    let ns = namespace.trim_end_matches('/');
    if name.starts_with('/') {
        name.to_string()
    } else if name == "~" || name.starts_with("~/") {
        format!("{ns}/{node_name}{}", &name[1..])
    } else if name.starts_with('~') {
        // Not a valid name (rcl refuses it): left as given.
        name.to_string()
    } else {
        format!("{ns}/{name}")
    }
}

/// A node's fully qualified name from its namespace and name (`/ns/name`, `/name`).
pub fn fully_qualified(namespace: &str, node_name: &str) -> String {
    format!("{}/{node_name}", namespace.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::{fully_qualified, resolve_name};

    #[test]
    fn names_resolve_in_the_node_s_namespace() {
        assert_eq!(
            resolve_name("/", "loc", "/cam0/image_raw"),
            "/cam0/image_raw"
        );
        assert_eq!(
            resolve_name("/", "loc", "cam0/image_raw"),
            "/cam0/image_raw"
        );
        assert_eq!(
            resolve_name("/robot", "loc", "cam0/image_raw"),
            "/robot/cam0/image_raw"
        );
        assert_eq!(resolve_name("/robot/", "loc", "/cam0"), "/cam0");
        assert_eq!(resolve_name("/robot", "loc", "~/image"), "/robot/loc/image");
        assert_eq!(resolve_name("/", "loc", "~/image"), "/loc/image");
        assert_eq!(resolve_name("/robot", "loc", "~"), "/robot/loc");
        assert_eq!(resolve_name("/robot", "loc", "~image"), "~image");
        assert_eq!(fully_qualified("/", "loc"), "/loc");
        assert_eq!(fully_qualified("/robot", "loc"), "/robot/loc");
    }
}
