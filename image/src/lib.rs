//! berth's image store (used by berthd; later by the supervisor's CRI image service).
