diagnose -f testdata/cli/in/diagnose/start-order.yaml
