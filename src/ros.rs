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
