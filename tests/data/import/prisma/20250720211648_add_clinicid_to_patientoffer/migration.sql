-- AlterTable
ALTER TABLE "patient_offers" ADD COLUMN "clinicId" TEXT;

-- Fill it from the offer each patient offer belongs to
UPDATE "patient_offers" po SET "clinicId" = o."clinicId" FROM "offers" o WHERE o."id" = po."offerId";

-- AlterTable
ALTER TABLE "patient_offers" ALTER COLUMN "clinicId" SET NOT NULL;

-- CreateIndex
CREATE INDEX "patient_offers_clinicId_idx" ON "patient_offers"("clinicId");

-- AddForeignKey
ALTER TABLE "patient_offers" ADD CONSTRAINT "patient_offers_clinicId_fkey" FOREIGN KEY ("clinicId") REFERENCES "clinics"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
