"""Reports for people: the sweep and efficiency tables, their figures, the offline plots page. No torch."""
