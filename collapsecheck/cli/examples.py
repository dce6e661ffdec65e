"""The examples each command's ``--help`` ends with (and docs/cli.md shows)."""

EXAMPLES = {
    "scan": [
        "collapsecheck scan examples/digits-healthy",
        "collapsecheck scan ckpt/ --cond cond.safetensors --fail-on at_risk --json out/scan.json",
        "collapsecheck scan ckpt/ --mode fast --report-dir report/ --junit report/junit.xml",
        "collapsecheck scan sd-pipeline/ --prompts prompts.txt --guidance 1,4,7.5 --dtype float16",
        "collapsecheck scan ckpt/ --fail-on collapsed,not_steerable,null_not_learned --json out/scan.json",
        "collapsecheck scan ckpt/ --baseline main-scan.json --max-regression 10",
        "collapsecheck scan org/model --revision v1.0 --prompts prompts.txt --mode fast",
    ],
    "compare": [
        "collapsecheck compare main-scan.json pr-scan.json",
        "collapsecheck compare base.json new.json --max-regression 10 --fail-on at_risk,weak --json out/compare.json",
    ],
    "trend": [
        "collapsecheck trend runs/exp1/ --mode fast",
        "collapsecheck trend runs/exp1/ --report-dir runs/exp1/trend --fail-on at_risk",
        "collapsecheck trend runs/exp1/ --cond cond.safetensors --json trend.json --plot trend.png --no-cache",
    ],
}
