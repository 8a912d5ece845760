diagnose -f testdata/cli/in/list.json -o json
