/// Messages as buyers and vendors write them, labelled by hand: `C` when the message carries a
/// phone number, an email address, a social handle or a link off the platform (so it must be
/// masked before an order is paid), `-` when it does not. Written for the masking detector's
/// figures (`ContactDetectorTests`); the hard cases on both sides are there on purpose: prices,
/// dates, times, microchip and registration numbers, weights and postcodes that are not contact
/// details, and spelled-out or spaced ones that are.
enum ContactCorpus {
    static let labelled: [(contact: Bool, text: String)] = raw.split(separator: "\n").compactMap { line in
        guard line.count > 2 else { return nil }
        return (line.hasPrefix("C"), String(line.dropFirst(2)))
    }

    static let raw = #"""
- Hi, is the black lab puppy still available?
- Hello! Yes, two boys and one girl are still looking for homes.
- What age are they now?
- They were born on 14/10/2026 so they are 7 weeks old today.
- Can I come and see them this Saturday at 10:30?
- Saturday works, we are about 20 minutes from the station.
- How much is the deposit?
- The deposit is £250 and the rest (£1,100) on collection.
- Are both parents health tested?
- Yes, hips scored 4:5 and 5:5, elbows 0:0, both clear for PRA.
- Is he microchipped? Chip number please.
- Microchip 985112003456789, registered on Petlog.
- What is the KC registration number?
- KC number AV04512603, papers come with the pup.
- Do they come with insurance?
- Four weeks free insurance and a puppy pack with 2kg of food.
- How big will she get?
- Mum is 28kg and dad 32kg, so around 27-30kg.
- Could you send more photos of the brown one?
- I've added six new photos to the listing just now.
- Is the cage still for sale? What size is it?
- It's 91 x 58 x 64 cm, barely used, from 2024.
- Would you take £40 for the cage?
- £45 is the lowest I can go, it was £89 new.
- OK deal, I'll order through the site now.
- Thanks, order received! I'll ship it tomorrow.
- Tracking number is on the order page.
- When will the kittens be ready to leave?
- At 13 weeks, so from the 2nd of January.
- Are they litter trained?
- Yes, all four use the tray and eat Royal Canin Kitten.
- Have they had their first vaccinations?
- First jab on 20.11.2026, second due 11.12.2026.
- What time suits you for a video call through the app?
- Tomorrow between 6 and 8 pm is fine.
- Can you deliver to Leeds? It's about 45 miles.
- I can meet you halfway, around junction 38 of the M1.
- Is the price negotiable?
- Sorry, the price is fixed at €1,350.
- My daughter is 8, are they good with children?
- They have grown up with my three kids aged 4, 9 and 12.
- Is the food grain free?
- Yes, it's a 12kg bag, best before 03/2027.
- How many feeds a day?
- Four meals a day until 12 weeks, then three.
- I paid the order, order number is 0193a1b2-7c4d.
- Payment received, thank you! Collection on the 19th.
- Our address is on the order, it's 14 Mill Lane.
- Is there parking near you?
- Yes, free parking right outside number 27.
- Can we collect at 2pm instead of 3?
- 2pm is perfect.
- The postcode is LS6 2QT.
- Does the pup come with a 5 generation pedigree?
- Yes, with a copy of both parents' test certificates.
- Which vet does the health check?
- Our vet in town checks every litter at 6 and 8 weeks.
- How long have you been breeding?
- Since 2015, one or two litters a year.
- Can I reserve the girl with the white patch?
- Reserved for you until Friday the 11th.
- The bird cage arrived damaged on one corner.
- So sorry! Please open a dispute with photos and I'll refund.
- I'd like a refund of £15 for the dent.
- Refunded £15, should show in 3-5 working days.
- What's the lifespan of this breed?
- Usually 12 to 15 years.
- Are the parents on site?
- Mum is here, dad is a stud 30 miles away.
- Can I pay cash on collection?
- Payment has to go through the site, it protects us both.
- Is it ok if my partner collects?
- Of course, just bring the order confirmation.
- Price dropped to 900 pounds for the last boy.
- Do you have a waiting list for 2027?
- Yes, next litter expected around March 2027.
- Weight at 8 weeks was 6.4kg.
- He's 1.2 kg heavier than his sister.
- The tank holds 240 litres and comes with a 300W heater.
- We're at 221B Baker Street, ring the top bell.
- I'll be there at 9:45 sharp.
- Flight lands 14:20, I'll drive straight over.
- My budget is 1200-1500.
- Litters in 2019-2024 all went to lovely homes.
- Reference for the transfer is ORDER 4471 on the site.
- Can you hold her until 23 December?
- Sure, 23.12 is fine.
- The hutch is 150cm wide and 60cm deep.
- We feed 3 x 100g a day.
- Sorry, meant 2 x 150g.
- Thank you so much, she settled in brilliantly!
- She slept from 11 till 6 last night.
- Left you a 5 star review.
- Reviewed you too, thanks again!
- The puppy's passport number is GB826012345678.
- Vaccination batch 2024/118/77 on the card.
- Do you ship to Ireland? Postcode D02 X285.
- Shipping to Ireland is €35 extra.
- Is this the 2m or 3m lead?
- It's the 3m one, item code 30-115.
- Ring size 10 for the collar please.
- Will it fit a 45 cm neck?
- Yes it adjusts from 38 to 50 cm.
- Meet at the park dot on the map in the listing?
- Let's meet at the services at 12.
- I'm at work till 5, free after.
- Look at the photos at the top of the listing.
- I'm based at Hale Farm, near the church.
- We can talk on the chat here any time.
- Message me here when you're on your way.
- Keep all messages on the site please, that's what protects your payment.
- I will call through the app video button.
- What's the difference between the 7kg and 15kg bags?
- 8 weeks, 2 days old today.
- Dad is Champion Oakfield Ruby (KC SR05551201).
- Our kennel name is Oakfield, affix number 12345.
- Total with delivery comes to £1,345.50.
- Delivery on 05/01/2027 between 10 and 12.
- Size 3 harness, chest 56-66cm.
- That's 0.5 kg of treats per bag.
- Ordered 2 bags, thank you!
- Do you have the blue one in stock? SKU 884-221-09.
- Room temperature should be 24-26 degrees.
- The terrarium is 90x45x45.
- Heat mat is 28W, thermostat included.
- The foal was born 2026-04-17.
- Hay is £6.50 a bale or 10 for £60.
- Can you do 25 bales for £140?
- Done, collection Sunday 8am.
- I have a question about order 2 of 3.
- Is she spayed? She's 14 months.
- Spayed in August, scar healed well.
- We are 1.5 hours from Bristol.
- She eats 250 grams of raw a day.
- Last worming 28/11, next in 4 weeks.
- Flea treatment on 01.12.2026.
- How tall is he at the shoulder? About 61 cm.
- Rabbit run is 6ft x 4ft.
- Quoted time slot 13:00-14:00.
- Thank you! See you then.
C Call me on 07700 900123 to arrange a viewing.
C My number is 07700900456, text me.
C Ring me: +44 7700 900789
C WhatsApp me on +44 (0) 7700 900 321 please.
C Text 0770 090 0654 after 6pm.
C US number: (415) 555-0134
C Call 415.555.0198 anytime.
C My cell is 415-555-0172.
C +1 415 555 0143 is my WhatsApp.
C Landline 020 7946 0958, ask for Sue.
C Phone 0161 496 0753 in the evenings.
C Reach me on 0044 7700 900 111.
C German mobile +49 151 23456789
C Ruf mich an: 0151 2345 6789
C Appelez-moi au 06 12 34 56 78.
C Mon numéro: +33 6 12 34 56 78
C Irish number 087 123 4567.
C Dutch: +31 6 12345678
C Mobile: 07700-900-222
C call 07700 900 333 or email instead
C Email me at ann.smith@example.com for more photos.
C ann.smith@example.com
C Send it to breeder_jo+litters@example.co.uk please.
C My email: john.doe @ example.com
C write to jane at example dot com
C jane (at) example (dot) com
C jane[at]example[dot]co[dot]uk
C sue dot brown at gmail dot com
C email sue AT example DOT com
C kennels at oakfield dot co dot uk
C Contact: info@oakfield-kennels.co.uk
C Please email photos to pups4u @ example . com
C Find us at www.oakfieldkennels.co.uk
C All our litters: https://oakfieldkennels.example.com/litters
C See http://bit.ly/3pupsxyz for the video.
C Check our Facebook page facebook.com/oakfieldkennels
C We're on instagram.com/oakfield_pups
C Instagram: @oakfield_pups
C Follow @fluffy.kittens.uk for updates
C message me on wa.me/447700900123
C Telegram t.me/janepups
C DM me @jane_breeds on insta
C My website is oakfieldpups.com
C More at goo.gl/maps/abc123
C Pay via paypal.me/janesmith to save fees
C Video on youtube.com/watch?v=abc123xyz
C Details on our site www.kittens-r-us.co.uk/available
C Hi, call me on 07700 900 987 so we can sort it outside the site.
C Cheaper if you pay me direct, email paydirect@example.com
C The kittens are ready, my number is 07700 900 555.
C Best to text me, 07700 900 666, I don't check here often.
C Give me a ring on 0 7 7 0 0 9 0 0 7 7 7.
C Whatsapp plus four four seven seven zero zero 900 888
C Number is 07700 900 444 and email is sam@example.com
C Save the fee: bank details by email, sam.w@example.org
C You can find me on snapchat @sam_pets
C My TikTok is @doodle.world
C I'm on Facebook as Jane Smith, or jane.smith.1985@example.com
C Reach the kennel at +44 1632 960 123.
C Office: 01632 960 456 (9-5).
C Mobile (UK) 07700 900 010
C Contact number 07700 900 020, I live in York.
C For the deposit email deposits@oakfield.example.net
C Our shop is at pet-supplies-direct.com/cages
C Order cheaper at petbargains.co.uk
C Video call me on Skype: live:jane.pups (or 07700 900 030)
C The breeder's number is 07700 900 040 if you want a reference.
C I work at Tesco, call the store 0113 496 0000 and ask for Mark.
C e-mail: mark.t@example.com
C Spanish mobile +34 612 345 678
C Italian: +39 312 345 6789
C Australian mobile 0412 345 678
C My other listing is on gumtree.com/p/pets/123456
C Pics: https://photos.example.com/share/xyz
C Here's the Google Drive link drive.google.com/file/d/123
C Text me at 07700.900.050
C Phone/WhatsApp 07700 900 060 - Jo
C Call 07 700 900 070
C (07700) 900080
C Tel: +44-7700-900-090
C You can reach me at jo_breeds@example.com anytime.
C Contact me at jo dot breeds at example dot com
C My gmail is jo.breeds@gmail.com
C Please use my email, breeder(at)example.org
C Write to me: kit.kennels@example.ie
C Hotmail: pups_galore@hotmail.co.uk
C Outlook address jane_b@outlook.com
C Contact the stud owner on 07700 900 100.
C Dad's owner: +44 7700 900 200
C Message me on WhatsApp 07700900300
C Signal: +447700900400
C Viber +44 7700 900500
C Let's take this off here, my number is 07700 900 600
C The transport company is 0800 123 4567
C Vet's number 01632 960 789 if you want to check
C Use my wife's phone, 07700 900 700
C Email or text: 07700 900 800 / ann@example.com
C Phone me, 07700 900 901 - Sarah
C My mobile is: 07700-900-902
C Call/text +44 7700 900903
C Tel 07700900904
C Phone no. 0 7700 900 905
C Whatsapp +44 7700-900-906
C Contact info: 07700 900907, sam@example.com
C I'm reachable at +1-212-555-0101
C US office (212) 555-0102
C Call (212)555-0103 ext 4
C Text 212 555 0104
C Canada +1 604 555 0105
C Email: hello@kittencottage.example.com
C hello at kittencottage dot com
C kittencottage [at] gmail [dot] com
C Find our reviews at trustpilot.com/review/oakfield
C Visit oakfield-kennels.co.uk for our history
C Our Etsy: etsy.com/shop/petcollars
C Ebay link ebay.co.uk/itm/123456
C Pay deposit at revolut.me/janesmith
C IG: @oakfield.kennels
C Insta @pawsandwhiskers_
C Find me on TikTok @puppy.palace.uk
C Facebook group: facebook.com/groups/labradorsuk
C Look up my number: 07700 900 911
C 07700 900 912 is my number, ring after 5
C Ring 07700 900 913 re: the cage
C Contact 07700 900 914 to collect sooner
C For quicker replies text 07700 900 915
C Call me instead: 07700 900 916.
C Here's my email so you can send the deposit: depo@example.com
C Send the remaining £900 to my email jess.pets@example.com on PayPal
C My husband's email is tom.r@example.co.uk
C Reach us on 01632 960 111 or 07700 900 917
C Ping me at +44 7700 900 918
C Contact @oakfield_pups on Instagram for more videos
C We post updates at https://www.instagram.com/oakfield_pups/
C Youtube channel youtube.com/@oakfieldpups
C Add me on Snapchat: @jess_pups
C Email me please: ANN.SMITH@EXAMPLE.COM
C Phone: +353 87 123 4567
C Call +61 412 345 678
C Mobile +44 7911 123456
C Tel +44 20 7946 0000
C Text me on seven seven zero zero nine double zero one two three.
C Call zero seven seven double oh, nine hundred, four five six.
C Find me by searching Oakfield Kennels on Facebook and message there.
C My handle on Insta is oakfieldpups without the at.
- Is the 10% discount still on for the second bag?
- Yes, 10% off any second item until Sunday.
- The parrot is 3 years old and says about 20 words.
- He came from a breeder in 2023, ringed 23-UK-4411.
- Dimensions 120 x 60 x 150 cm, weight 35 kg.
- Rehoming fee is £150, includes the 4ft tank.
- My collection window is 12:00-16:00 on the 21st.
- Do you accept returns within 14 days?
- Unopened items within 30 days, as the site says.
- Our vet said she's 2.8 kg and healthy.
- Please see page 2 of the listing for the pedigree.
- Temperature at night shouldn't drop under 18°C.
- Bought 3, got 4 with the offer, thank you!
- Sorry for the late reply, I was away 3-7 December.
- Sire and dam both DNA tested, certificates 7781 and 7782.
- Order 3 of 5 shipped today, the rest on Monday.
- Can I add a second collar to order 1?
- The invoice total is 1.234,56 EUR including VAT.
- He's 6 months, 14.5 kg, fully vaccinated.
- Litter of 9 born 01/09/2026 at 03:15.
- Expected due date 12.02.2027.
- We are open 9:00 to 17:30 on weekdays.
- Questions about feeding? Happy to help here.
- The photo at the top is from this morning.
- I'll reply at lunchtime, around 1.
- Is 7.30 too early to collect?
- Price is 1 500 € for females and 1 300 € for males.
- I can knock off 50 if you collect by Friday.
- Thank you, she is eating well and playing with our cat.
- Ask me anything here, I reply within an hour.
C I've emailed you at the address on your profile, it's bob.r@example.com right?
C Drop me a line at kennel.office@example.org if the chat is down.
C Or find us on www.facebook.com/OakfieldKennelsUK
C Number 07700 900 919 - Dave (the dad's owner)
"""#
}
