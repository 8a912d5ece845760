diagnose -f testdata/cli/in/diagnose/users-differ.yaml
