diagnose -f testdata/cli/in/diagnose/volume-read-only.yaml -o json
