Feature: Failed attempts are retried with backoff, then the job gives up
  Greenlight calls time out and fail. A job whose attempt failed goes back
  to pending and waits before it runs again, longer after each failure.
  After its last allowed retry fails, the job fails for good and keeps the
  last error.

  Background:
    Given a queue that waits 10 seconds after the first failure, doubling each time

  Scenario: A job allowed 2 retries runs three times, then fails for good
    Given a learner enqueued a job allowed 2 retries
    When worker "w1" claims work
    And worker "w1" fails the job with "greenlight timed out"
    Then the job is pending, with 1 failed attempt
    And the job becomes ready again after 10 seconds
    When worker "w1" claims work
    And worker "w1" fails the job with "greenlight returned 503"
    Then the job is pending, with 2 failed attempts
    And the job becomes ready again after 20 seconds
    When worker "w1" claims work
    Then worker "w1" holds the job on attempt 3
    When worker "w1" fails the job with "greenlight returned 503 again"
    Then the job has failed with error "greenlight returned 503 again"
    And the job has 3 failed attempts out of 3 attempts
    And a claim by worker "w1" finds nothing

  Scenario: A job that fails twice and then succeeds completes
    Given a learner enqueued a job allowed 3 retries
    When worker "w1" claims work
    And worker "w1" fails the job with "greenlight timed out"
    And 10 seconds pass
    And worker "w1" claims work
    And worker "w1" fails the job with "greenlight timed out"
    And 20 seconds pass
    And worker "w1" claims work
    And worker "w1" completes the job with result {"stdout": "ok"}
    Then the job is complete with result {"stdout": "ok"}
    And the job has 2 failed attempts out of 3 attempts

  Scenario: A permanent error fails the job at once, retries left or not
    Given a learner enqueued a job allowed 3 retries
    When worker "w1" claims work
    And worker "w1" fails the job permanently with "the payload names no language"
    Then the job has failed with error "the payload names no language"
    And the job has 1 failed attempt out of 1 attempt
