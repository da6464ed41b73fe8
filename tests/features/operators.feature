Feature: Operators cancel, requeue, and learners' double clicks count once
  An operator can cancel a job that has not started and give a failed job
  a fresh start. A learner who clicks "run" twice gets one job, not two.

  Background:
    Given an empty queue

  Scenario: A pending job is cancelled with a reason and requeued later
    Given a learner enqueued a job allowed 3 retries
    When an operator cancels the job because "the learner left the course"
    Then the job has failed with error "the learner left the course"
    And a claim by worker "w1" finds nothing
    When an operator requeues the job
    Then the job is pending, with 0 failed attempts
    When worker "w1" claims work
    Then worker "w1" holds the job on attempt 1

  Scenario: An executing job cannot be cancelled
    Given a learner enqueued a job allowed 3 retries
    When worker "w1" claims work
    And an operator cancels the job because "too late"
    Then the operator is told the job is executing
    And the job is executing, held by worker "w1"

  Scenario: A job that did not fail cannot be requeued
    Given a learner enqueued a job allowed 3 retries
    When an operator requeues the job
    Then the operator is told the job is pending

  Scenario: The same idempotency key enqueues one job
    When a learner enqueues a job with idempotency key "learner-7-submit-42"
    And the learner enqueues a job with idempotency key "learner-7-submit-42" again
    Then the second enqueue returned the first job
    And the queue holds 1 job

  Scenario: Bad input is refused and nothing is written
    When a learner enqueues a job with payload "just a string"
    Then the enqueue is refused as invalid input naming "request_payload"
    And the queue holds 0 jobs
