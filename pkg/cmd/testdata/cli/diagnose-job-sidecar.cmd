diagnose -f testdata/cli/in/diagnose/job-sidecar.yaml
