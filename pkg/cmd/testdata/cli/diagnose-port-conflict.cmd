diagnose -f testdata/cli/in/diagnose/port-conflict.yaml
