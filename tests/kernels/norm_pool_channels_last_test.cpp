// Placeholder: filled in by the work in progress (issue 8, channels-last).
