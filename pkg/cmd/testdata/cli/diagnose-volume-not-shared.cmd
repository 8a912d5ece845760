diagnose -f testdata/cli/in/diagnose/volume-not-shared.yaml
