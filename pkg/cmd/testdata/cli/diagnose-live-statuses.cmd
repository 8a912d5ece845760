diagnose -f testdata/cli/in/diagnose/live-statuses.yaml
