"""The launch wing: DESIGN §2 as stages, one file each, each a function
over frozen values.

=============  ==============================  =================================
stage          function                        value it returns
=============  ==============================  =================================
request        `request.build_request`         `request.Request`
resolve        `resolve.resolve_profile`,      `resolve.Resolved` (profile with
               `resolve_image`, ...            origins, root, argv, image, filter)
leases         `leases.take_leases`            `leases.Leases` (ids, level, net)
build          `build.build_plan` (pure)       `sandbox.runtime.plan.LaunchPlan`
run            `run.run_launch`                `run.RunResult`
record         `record.build_*_record`         the audit records (dicts)
=============  ==============================  =================================

`run.prepare_launch` walks request -> build; `run.plan_launch` is
``--dry-run`` (dry leases, the same code). `sandbox.api.Sandbox` is a thin
facade over these. The package face imports nothing: each launch path
loads only the stages it needs.
"""
