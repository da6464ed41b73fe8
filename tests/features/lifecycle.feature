Feature: A job runs once and keeps its result
  A learner's code submission becomes a job. One worker claims it, runs it
  on Greenlight and stores what Greenlight returned. No other worker can
  take the job while the first one holds it.

  Background:
    Given an empty queue

  Scenario: A pending job is claimed, completed and kept with its result
    When a learner enqueues a job with payload {"language": "python", "code": "print(1)"}
    Then the job is pending, with 0 failed attempts
    When worker "w1" claims work
    Then worker "w1" holds the job on attempt 1
    And the job is executing, held by worker "w1"
    And a claim by worker "w2" finds nothing
    When worker "w1" completes the job with result {"stdout": "1\n"}
    Then the job is complete with result {"stdout": "1\n"}
    And a claim by worker "w2" finds nothing

  Scenario: Higher priority runs first, then the job that waited longest
    When a learner enqueues job "old" with priority 0
    And 1 second passes
    And a learner enqueues job "new" with priority 0
    And a learner enqueues job "urgent" with priority 10
    Then worker "w1" claims "urgent", then "old", then "new"

  Scenario: A delayed job waits for its time
    When a learner enqueues a job to run in 30 seconds
    Then a claim by worker "w1" finds nothing
    When 29 seconds pass
    Then a claim by worker "w1" finds nothing
    When 1 second passes
    And worker "w1" claims work
    Then worker "w1" holds the job on attempt 1
